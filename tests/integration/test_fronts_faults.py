"""Faults under fronts (design.md §12): the engine killed under load, paused, and a PostgreSQL
owner killed with a standby waiting; fronts answer 503 engine-unavailable meanwhile and
recover, with nothing acknowledged lost."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.integration.engine_process import EngineProcess
from tests.integration.fronts import ADMIN, BUY, FRESH, TOKEN, Front, buy
from tests.integration.fronts import cluster as cluster  # the fixture


async def test_engine_killed_under_load_503_then_recovery_with_nothing_acknowledged_lost(
    cluster,
):
    one, two = cluster.fronts
    acknowledged: dict[str, str] = {}  # idempotency key -> order id
    unanswered: list[str] = []
    async with httpx.AsyncClient(timeout=10) as client:
        await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 100_000}, headers=ADMIN)
        killed = trio.Event()
        answers: list[tuple[int, float, dict[str, str]]] = []

        async def shopper(front: Front, n: int) -> None:
            for i in range(10_000):
                key = f"s{n}-{i}"
                started = time.monotonic()
                r = await client.post(f"{front.url}/v1/orders", json=BUY,
                                      headers={**ADMIN, "Idempotency-Key": key})  # fmt: skip
                if r.status_code == 201:
                    acknowledged[key] = r.json()["id"]
                else:
                    unanswered.append(key)
                    if killed.is_set():
                        answers.append((r.status_code, time.monotonic() - started,
                                        dict(r.headers)))  # fmt: skip
                        body = r.json()
                        assert body["type"] == "/problems/engine-unavailable", body
                        return

        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(shopper, one if n % 2 else two, n)
            await trio.sleep(1.0)
            cluster.engine.kill()  # SIGKILL, and reaped
            killed.set()
        assert answers, "no request saw the engine gone"
        for status, seconds, headers in answers:
            assert status == 503 and "retry-after" in headers and seconds < 5.0
        ready = await client.get(f"{one.url}/readyz")
        assert ready.status_code == 503
        assert (await client.get(f"{one.url}/healthz")).status_code == 200
    cluster.restart_engine()
    async with httpx.AsyncClient(timeout=10, limits=FRESH) as client:
        for front in cluster.fronts:  # both fronts link again

            async def ready_again(url: str = front.url) -> bool:
                return (await client.get(f"{url}/readyz")).status_code == 200

            deadline = time.monotonic() + 10
            while not await ready_again():
                assert time.monotonic() < deadline, "a front never linked to the new engine"
                await trio.sleep(0.05)
        for key, order_id in acknowledged.items():  # every acknowledged order is there
            got = await client.get(f"{two.url}/v1/orders/{order_id}", headers=ADMIN)
            assert got.status_code == 200, (key, got.text)
        for key in unanswered:  # a retry with its key gets its answer (placed once at most)
            retried = await client.post(f"{one.url}/v1/orders", json=BUY,
                                        headers={**ADMIN, "Idempotency-Key": key})  # fmt: skip
            assert retried.status_code == 201
        level = (await client.get(f"{one.url}/v1/products/hot")).json()
        assert level["reserved"] == 0
        assert level["on_hand"] == 100_000 - len(acknowledged) - len(set(unanswered))


@pytest.mark.parametrize("cluster", [("--engine-timeout", "1")], indirect=True)
async def test_a_paused_engine_gets_503_then_recovery_after_sigcont(cluster):
    one, _ = cluster.fronts
    async with httpx.AsyncClient(timeout=10, limits=FRESH) as client:
        await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 10}, headers=ADMIN)
        cluster.engine.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            r = await client.post(f"{one.url}/v1/orders", json=BUY,
                                  headers={**ADMIN, "Idempotency-Key": "paused"})  # fmt: skip
            assert r.status_code == 503 and r.headers["retry-after"]
            assert r.json()["type"] == "/problems/engine-unavailable"
            assert time.monotonic() - started < 2.0  # --engine-timeout 1
            await trio.sleep(3.5)  # the link's pings notice too
            assert (await client.get(f"{one.url}/readyz")).status_code == 503
        finally:
            cluster.engine.signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while (await client.get(f"{one.url}/readyz")).status_code != 200:
            assert time.monotonic() < deadline
            await trio.sleep(0.05)
        again = await client.post(f"{one.url}/v1/orders", json=BUY,
                                  headers={**ADMIN, "Idempotency-Key": "paused"})  # fmt: skip
        assert again.status_code == 201
        level = (await client.get(f"{one.url}/v1/products/hot")).json()
        assert level["available"] == 9  # the order placed once, whichever call placed it


async def test_fronts_follow_the_postgresql_standby_when_the_owner_is_killed(
    postgres_dsn, tmp_path
):
    socket_dir = Path(tempfile.mkdtemp(prefix="stk", dir="/tmp"))
    owner = EngineProcess(tmp_path, postgres_dsn, f"unix:{socket_dir / 'owner.sock'}")
    standby = EngineProcess(tmp_path, postgres_dsn, f"unix:{socket_dir / 'standby.sock'}")
    both = f"{owner.listen},{standby.listen}"
    fronts = [
        Front(tmp_path, TOKEN, both, host=host, name=f"front{i}")
        for i, host in enumerate(("127.0.0.1", "127.0.0.2"))
    ]
    try:
        owner.start()
        async with trio.open_nursery() as nursery:
            # the standby waits for the store before it listens: its start returns after the
            # owner is gone
            nursery.start_soon(partial(trio.to_thread.run_sync, standby.start, 60.0))
            for front in fronts:
                front.start()
            one, two = fronts
            async with httpx.AsyncClient(timeout=10, limits=FRESH) as client:
                await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 10},
                                 headers=ADMIN)  # fmt: skip
                first = await client.post(f"{two.url}/v1/orders", json=BUY, headers=ADMIN)
                assert first.status_code == 201
                owner.kill()
                deadline = time.monotonic() + 30
                for front in fronts:
                    while (await client.get(f"{front.url}/readyz")).status_code != 200:
                        assert time.monotonic() < deadline, "a front never followed the standby"
                        await trio.sleep(0.1)
                again = await client.get(f"{one.url}/v1/orders/{first.json()['id']}",
                                         headers=ADMIN)  # fmt: skip
                assert again.status_code == 200
                assert await buy(client, one, ADMIN) == 201
                assert await buy(client, two, ADMIN) == 201
                level = (await client.get(f"{two.url}/v1/products/hot")).json()
                assert level["on_hand"] == 7
        assert standby.process is not None and standby.process.poll() is None
    finally:
        for front in fronts:
            front.kill()
        owner.kill()
        standby.kill()
        shutil.rmtree(socket_dir, ignore_errors=True)
