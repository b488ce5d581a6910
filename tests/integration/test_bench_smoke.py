"""The comparison bench and the flash-sale simulation, in their quick modes, as a user runs
them: every contender runs (or says why it was skipped) and every run verifies. No timing is
asserted; these are smoke tests of the bench itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import POSTGRES_DSN

ON_CI = os.environ.get("CI") == "true"


def bench(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOCKADE_BENCH_POSTGRES_DSN": POSTGRES_DSN}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True, text=True, env=env, timeout=timeout_s, check=False,
    )  # fmt: skip


def test_quick_comparison_verifies_every_contender(tmp_path):
    done = bench("--quick", "--out", str(tmp_path), timeout_s=180)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    results = data["results"]
    contenders = {r["contender"] for r in results}
    assert contenders == {
        "stockade-memory", "stockade-sqlite", "stockade-postgres", "stockade-http",
        "pg-rowlock", "redis-lua",
    }  # fmt: skip
    assert {r["workload"] for r in results} == {"hot", "zipf", "multi"}
    for r in results:
        if r["skipped"] is not None:
            # this machine has PostgreSQL and Redis: CI must exercise both
            assert not ON_CI, f"{r['contender']} skipped under CI: {r['skipped']}"
            continue
        assert r["verified"] and r["problems"] == [], r
        assert r["placed"] > 0 and r["rate"] > 0, r
    assert "verified" in done.stdout and "FAILED" not in done.stdout
    assert (tmp_path / "throughput.png").stat().st_size > 1000
    assert (tmp_path / "latency.png").stat().st_size > 1000
    assert data["meta"]["command"] == f"python -m bench --quick --out {tmp_path}"


def test_quick_flash_sale_checks_itself():
    done = bench("flash-sale", "--quick", timeout_s=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("verified: sold <= units") == 2, done.stdout
    assert "flash sale, embedded (memory)" in done.stdout
    assert "flash sale, HTTP" in done.stdout


def test_quick_soak_keeps_memory_flat_and_its_books_balanced(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--orders", "20000", "--open-holds", "2000",
         "--samples", "4", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "books: verified (22,000 orders" in done.stdout
    lines = done.stdout.splitlines()
    rows = [line.split() for line in lines if line[:12].strip().replace(",", "").isdigit()]
    orders = [int(row[0].replace(",", "")) for row in rows]
    assert orders == [0, 2000, 5000, 10000, 15000, 20000], done.stdout
    retired = int(rows[-1][4].replace(",", ""))
    assert retired > 0  # finished orders left memory while the load ran
    assert "restart with 2,000 open holds" in done.stdout and "per 100k open holds" in done.stdout
    assert (tmp_path / "soak.png").stat().st_size > 1000


def test_quick_startup_benches_load_only_what_they_must():
    catalogue = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--products", "2000", "--holds", "300",
         "--dsn", POSTGRES_DSN],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert catalogue.returncode == 0, catalogue.stdout + catalogue.stderr
    assert "start-up with 2,000 products and 300 open holds" in catalogue.stdout
    history = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--dsn", POSTGRES_DSN, "history",
         "--finished", "0,5000", "--holds", "100", "--products", "500"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert history.returncode == 0, history.stdout + history.stderr
    measured = [line for line in history.stdout.splitlines() if line.startswith(("SQLite", "Post"))]
    assert [line.split()[1] for line in measured][:2] == ["0", "5,000"]
    if not ON_CI:
        return
    assert len(measured) == 4, history.stdout  # PostgreSQL too
