"""``stockade serve --workers 2`` for real: the supervisor, a ``stockade engine`` process and two
``stockade serve --engine`` fronts on one port, over SQLite, driven over HTTP on loopback.
The supervisor's own rules are tested over stand-ins in ``test_supervisor.py``."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bench.server import Server
from tests.integration.rush import last_unit_rush
from tests.integration.test_supervisor import alive, wait_gone

TOKEN = "workers-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DEADLINE_S = 60.0

#: httpx leaves its request body's async generator unfinished when the connection breaks
#: mid-send (a front killed or stopping under the client): trio's finalizer then warns.
BODY_ABANDONED = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class Workers(Server):
    """``serve --workers 2`` on a free port; ``start()`` returns once the supervisor says it
    listens (a front answered through the port), not at a child's own ``listening`` line."""

    def __init__(self, workdir: Path, workers: int = 2) -> None:
        super().__init__(workdir, TOKEN, args=("--workers", str(workers)), start_timeout_s=60)

    def start(self) -> None:
        super().start()
        self.wait_for("listening")

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        return [e for e in lines if e.get("role") == "supervisor" and e["event"] == name]

    def wait_for(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + DEADLINE_S
        while len(found := self.events(name)) < count:
            assert self.running() and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        return found

    def children(self, child: str) -> list[int]:
        return [e["pid"] for e in self.events("child_started") if e["child"] == child]


def workers_missing() -> str | None:
    """Which part the workers need is not in this tree yet (the engine process, the fronts)."""
    for module in ("stockade.engine_process", "stockade.fronts.front"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    if (missing := workers_missing()) is not None:  # pragma: no cover - until they land
        if os.environ.get("CI") == "true":
            pytest.fail(f"serve --workers needs {missing}")
        pytest.skip(f"serve --workers needs {missing}, not in this tree yet")
    server = Workers(tmp_path)
    server.start()
    yield server
    server.kill()
    for pid in server.children("front") + server.children("engine"):
        if alive(pid):  # the test failed half-way: leave nothing behind
            os.kill(pid, signal.SIGKILL)


def books_balance(database: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stockade", "check", "--database", f"sqlite:///{database}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def stored_orders(database: Path) -> dict[str, str]:
    with sqlite3.connect(database) as conn:
        return dict(conn.execute("SELECT id, status FROM orders").fetchall())


async def test_the_quick_start_through_two_workers_on_sqlite(workers):
    async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10) as client:
        put = await client.put("/v1/products/tee", json={"on_hand": 100})
        assert put.status_code == 201, put.text
        order = {"lines": [{"sku": "tee", "qty": 2}], "hold_seconds": 900}
        key = {"Idempotency-Key": "cart-42"}
        placed = await client.post("/v1/orders", json=order, headers=key)
        assert placed.status_code == 201, placed.text
        assert placed.json()["status"] == "reserved"
        again = await client.post("/v1/orders", json=order, headers=key)  # any front
        assert again.json()["id"] == placed.json()["id"]
        order_id = placed.json()["id"]
        confirmed = await client.post(f"/v1/orders/{order_id}/confirm")
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
        stock = (await client.get("/v1/products/tee")).json()
        assert stock == {
            "sku": "tee",
            "on_hand": 98,
            "reserved": 0,
            "available": 98,
            "on_sale": True,
        }
        page = (await client.get("/v1/events")).json()
        types = [event["type"] for event in page["items"] if event["type"].startswith("order.")]
        assert types == ["order.placed", "order.confirmed"], page
    assert workers.stop() == 0  # SIGTERM: fronts drain, the engine commits
    assert stored_orders(workers.database) == {order_id: "confirmed"}
    assert books_balance(workers.database).returncode == 0


async def test_a_last_unit_rush_through_two_workers_sells_exactly_the_stock(workers):
    await last_unit_rush(workers.url, ADMIN)
    assert workers.stop() == 0
    assert list(stored_orders(workers.database).values()) == ["confirmed"] * 100


@BODY_ABANDONED
async def test_a_front_killed_under_load_loses_nothing_acknowledged(workers):
    """Four buyers place orders through the port (each with its Idempotency-Key, retried on a
    dropped connection) while one front is kill -9ed: the other serves, the dead one is
    started again, and every order answered 201 is in the store after the stop."""
    async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10) as client:
        assert (await client.put("/v1/products/sku", json={"on_hand": 10_000})).status_code == 201
    acknowledged: set[str] = set()
    dropped = 0
    under_load = trio.Event()

    async def buyer(n: int) -> None:
        nonlocal dropped
        limits = httpx.Limits(max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10,
                                     limits=limits) as client:  # fmt: skip
            for i in range(60):
                key = {"Idempotency-Key": f"buyer-{n}-{i}"}
                for _ in range(20):  # bounded retries
                    try:
                        r = await client.post(
                            "/v1/orders", json={"lines": [{"sku": "sku", "qty": 1}]}, headers=key
                        )
                    except httpx.TransportError:  # its front died under it: retry the key
                        dropped += 1
                        continue
                    if r.status_code == 503:  # the front is draining: retry the key
                        await trio.sleep(0.05)
                        continue
                    assert r.status_code == 201, r.text
                    acknowledged.add(r.json()["id"])
                    if len(acknowledged) == 40:
                        under_load.set()
                    break
                else:
                    raise AssertionError(f"order buyer-{n}-{i} never answered")

    first = workers.children("front")

    async def killer() -> None:
        await under_load.wait()
        os.kill(first[0], signal.SIGKILL)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(killer)
        for n in range(4):
            nursery.start_soon(buyer, n)
    assert len(acknowledged) == 240
    workers.wait_for("child_started", count=4)  # engine, two fronts, the front restarted
    (exited,) = workers.events("child_exited")
    assert exited["pid"] == first[0] and exited["exit_code"] == -signal.SIGKILL
    assert workers.stop() == 0
    orders = stored_orders(workers.database)
    assert acknowledged <= set(orders) and len(orders) == 240  # each key took stock once
    assert books_balance(workers.database).returncode == 0


def test_the_supervisor_killed_leaves_no_orphan_and_frees_the_store(workers, tmp_path):
    pids = workers.children("front") + workers.children("engine")
    assert len(pids) == 3 and all(alive(pid) for pid in pids)
    (listening,) = workers.events("engine_listening")
    run_dir = Path(listening["url"].removeprefix("unix:")).parent
    workers.stop(signal.SIGKILL)
    wait_gone(pids)
    assert not run_dir.exists()  # the orphans removed the private directory on their way out
    again = Server(tmp_path, TOKEN)  # today's single process takes the SQLite file
    again.start()
    try:
        assert httpx.get(f"{again.url}/readyz", timeout=10).status_code == 200
    finally:
        assert again.stop() == 0


async def test_metrics_sum_the_fronts_and_count_the_engine_once(workers):
    async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10) as client:
        assert (await client.put("/v1/products/tee", json={"on_hand": 100})).status_code == 201
    for _ in range(20):  # a connection each: the kernel spreads them over both fronts
        async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10) as client:
            placed = await client.post("/v1/orders", json={"lines": [{"sku": "tee", "qty": 1}]})
            assert placed.status_code == 201, placed.text
    async with httpx.AsyncClient(base_url=workers.url, timeout=10) as client:
        text = (await client.get("/metrics")).text
    series = [line for line in text.splitlines() if not line.startswith("#")]
    orders_201 = [line for line in series if line.startswith("stockade_http_requests_total{")
                  and "orders" in line and 'status="201"' in line]  # fmt: skip
    assert sum(float(line.rsplit(" ", 1)[1]) for line in orders_201) == 20, orders_201
    placed_total = [line for line in series if line.startswith("stockade_orders_placed_total ")]
    assert placed_total == ["stockade_orders_placed_total 20.0"], placed_total


async def test_the_engine_killed_is_restarted_and_the_fronts_recover(workers):
    """Between the kill and the new engine, orders are answered 503 engine-unavailable (never
    500, never a hang); afterwards they succeed again, and every 201 is in the store."""
    async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10) as client:
        assert (await client.put("/v1/products/sku", json={"on_hand": 1000})).status_code == 201
        (engine,) = workers.children("engine")
        acknowledged: list[str] = []
        statuses: set[int] = set()
        for _ in range(10):
            r = await client.post("/v1/orders", json={"lines": [{"sku": "sku", "qty": 1}]})
            acknowledged.append(r.json()["id"])
        n = 0  # each order retried with its key until answered
        os.kill(engine, signal.SIGKILL)
        deadline = time.monotonic() + DEADLINE_S
        while len(workers.children("engine")) < 2 or 201 not in statuses:
            assert time.monotonic() < deadline, statuses
            body = {"lines": [{"sku": "sku", "qty": 1}]}
            r = await client.post("/v1/orders", json=body, headers={"Idempotency-Key": f"k{n}"})
            statuses.add(r.status_code)
            if r.status_code == 201:
                acknowledged.append(r.json()["id"])
                n += 1
            else:
                assert r.status_code == 503, r.text
                assert r.json()["type"].endswith("engine-unavailable"), r.text
                assert "Retry-After" in r.headers
                await trio.sleep(0.05)
    assert workers.stop() == 0
    orders = stored_orders(workers.database)
    assert set(acknowledged) <= set(orders), "an acknowledged order was lost"
    assert books_balance(workers.database).returncode == 0


def test_a_store_another_process_owns_stops_the_supervisor(tmp_path):
    if (missing := workers_missing()) is not None:  # pragma: no cover - until they land
        pytest.skip(f"serve --workers needs {missing}, not in this tree yet")
    owner = Server(tmp_path, TOKEN)
    owner.start()
    try:
        second = Workers(tmp_path)
        second.log = tmp_path / "second.log"
        with pytest.raises(RuntimeError, match="did not start"):
            second.start()
        assert second.process is not None and second.process.wait(timeout=DEADLINE_S) == 1
        (failed,) = second.events("failed")
        assert failed["error"] == "engine-cannot-start"
        assert "StoreInUse" in second.log.read_text()  # the engine's own line says why
        assert second.children("front") == []
    finally:
        assert owner.stop() == 0


def test_a_postgresql_standby_waits_for_the_owner_then_serves(tmp_path, postgres_dsn):
    """``--workers 2`` on a PostgreSQL store another server owns: its engine waits as a hot
    standby (said in the supervisor's log), and takes over when the owner is killed."""
    if (missing := workers_missing()) is not None:  # pragma: no cover - until they land
        pytest.skip(f"serve --workers needs {missing}, not in this tree yet")
    owner = Server(tmp_path, TOKEN, args=("--database", postgres_dsn))
    owner.start()
    standby = Workers(tmp_path)
    standby.args = ("--workers", "2", "--database", postgres_dsn)
    standby.log = tmp_path / "standby.log"
    try:
        httpx.put(f"{owner.url}/v1/products/tee", json={"on_hand": 5}, headers=ADMIN, timeout=10)
        placed = httpx.post(f"{owner.url}/v1/orders", headers=ADMIN, timeout=10,
                            json={"lines": [{"sku": "tee", "qty": 2}]})  # fmt: skip
        assert placed.status_code == 201, placed.text
        with open(standby.log, "a") as log:
            standby.process = subprocess.Popen(
                [sys.executable, "-m", "stockade", "serve", *standby.args], cwd=tmp_path,
                env={**os.environ, "STOCKADE_ADMIN_TOKEN": TOKEN,
                     "STOCKADE_PORT": str(standby.port)}, stderr=log,
            )  # fmt: skip
        standby.wait_for("engine_waiting")
        assert standby.events("listening") == [] and standby.children("front") == []
        owner.stop(signal.SIGKILL)
        standby.wait_for("listening")
        level = httpx.get(f"{standby.url}/v1/products/tee", timeout=10).json()
        assert level["on_hand"] == 3  # the owner's order is there
        assert standby.stop() == 0
    finally:
        owner.kill()
        standby.kill()


@BODY_ABANDONED
async def test_sigterm_under_load_drains_the_fronts_and_commits_every_answered_order(workers):
    async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10) as client:
        assert (await client.put("/v1/products/sku", json={"on_hand": 10_000})).status_code == 201
    acknowledged: set[str] = set()
    under_load = trio.Event()

    async def buyer() -> None:
        async with httpx.AsyncClient(base_url=workers.url, headers=ADMIN, timeout=10) as client:
            for _ in range(500):  # bounded; the stop ends it long before
                try:
                    r = await client.post("/v1/orders", json={"lines": [{"sku": "sku", "qty": 1}]})
                except httpx.TransportError:  # closed or refused: the server is stopping
                    return
                if r.status_code == 503:  # shutting-down: refused, changed nothing
                    return
                assert r.status_code == 201, r.text
                acknowledged.add(r.json()["id"])
                if len(acknowledged) == 30:
                    under_load.set()

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(buyer)
        await under_load.wait()
        assert workers.process is not None
        workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(timeout=DEADLINE_S) == 0
    stopped = [json.loads(line) for line in workers.log.read_text().splitlines()
               if line.startswith("{") and '"stopped"' in line]  # fmt: skip
    roles = [line.get("role") for line in stopped]
    assert roles.index("engine") > max(i for i, role in enumerate(roles) if role == "front")
    assert roles[-1] == "supervisor"
    orders = stored_orders(workers.database)
    assert acknowledged <= set(orders), "an answered order was not committed"
    assert books_balance(workers.database).returncode == 0
