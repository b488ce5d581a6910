"""kill -9 at random moments under load: every acknowledged change survives, books balance."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stockade import StockLevel
from stockade.persistence.memory import StoreState
from tests.books import assert_books_balance, assert_store_matches
from tests.integration.stores import read_postgres, read_sqlite

ROOT = Path(__file__).resolve().parents[2]
#: What an acknowledged status may have become by the time of the crash.
LATER = {
    "reserved": {"reserved", "confirmed", "cancelled", "expired"},
    "confirmed": {"confirmed", "cancelled"},
    "cancelled": {"cancelled"},
    "expired": {"expired"},  # a cancel that met a lapsed hold answers it as it is: expired
}


def spawn_worker(database: str) -> subprocess.Popen[str]:
    """Start crash_worker.py on ``database``; it prints "ready" once its engine is open."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash_worker", database],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_and_kill(database: str, seconds: float) -> list[tuple[str, str]]:
    worker = spawn_worker(database)
    assert worker.stdout is not None
    assert worker.stdout.readline() == "ready\n"
    time.sleep(seconds)
    worker.send_signal(signal.SIGKILL)
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    acked = []
    for line in out.splitlines():
        if line.count(" ") == 1:  # the last line may be cut short by the kill
            order_id, status = line.split()
            acked.append((order_id, status))
    return acked


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_survives_kill_9_under_load(request, tmp_path, store):
    rng = random.Random(1)
    if store == "sqlite":
        database = f"sqlite:///{tmp_path / 'crash.db'}"

        def read() -> StoreState:
            return read_sqlite(database[len("sqlite:///") :])
    else:
        database = request.getfixturevalue("postgres_dsn")

        def read() -> StoreState:
            return read_postgres(database)

    acked: dict[str, str] = {}
    for _cycle in range(4):
        for order_id, status in run_and_kill(database, rng.uniform(0.3, 1.2)):
            acked[order_id] = status
        state = read()
        missing = [oid for oid in acked if oid not in state.orders]
        assert not missing, f"{len(missing)} acknowledged orders lost"
        for order_id, status in acked.items():
            assert state.orders[order_id].status in LATER[status], (order_id, status)
        levels = {
            sku: StockLevel(sku, on_hand, reserved, on_hand - reserved)
            for sku, (on_hand, reserved) in state.products.items()
        }
        assert_store_matches(state, levels, state.orders.values())
        initial = {sku: 0 for sku in levels}
        for m in state.movements or []:
            if m.kind in ("set", "adjusted"):
                initial[m.sku] += m.d_on_hand
        assert_books_balance(levels, state.orders.values(), initial)
    assert len(acked) > 100  # the load really ran
