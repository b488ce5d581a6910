"""PostgreSQL faults: a killed writer session, an outage, a second instance."""

from __future__ import annotations

import asyncio
import signal
import time
from urllib.parse import urlsplit

import asyncpg
import pytest
import trio

import stockade
from stockade import Overloaded
from stockade.persistence.postgres import PostgresStore, StoreLost
from tests.integration.crashes import spawn_worker
from tests.integration.proxy import Proxy
from tests.integration.stores import read_postgres

pytestmark = pytest.mark.usefixtures("postgres_dsn")


def via_proxy(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    userinfo, _, _ = parts.netloc.rpartition("@")
    host = f"127.0.0.1:{port}"
    return parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host).geturl()


def terminate(dsn: str, application_name: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return len(
                await conn.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    application_name,
                )
            )
        finally:
            await conn.close()

    return asyncio.run(run())


async def test_outage_loses_nothing_and_service_resumes(postgres_dsn):
    target = urlsplit(postgres_dsn)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
    acked: dict[str, str] = {}
    outcomes = {"overloaded": 0}
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        dsn = via_proxy(postgres_dsn, proxy.port) + "&application_name=stockade_outage"
        async with stockade.open_engine(dsn, journal_size=100) as engine:
            await engine.set_stock("a", 1_000_000)
            outage = trio.Event()
            stop = trio.Event()

            async def buyer():
                while not stop.is_set():
                    try:
                        order = await engine.place_order({"a": 1})
                    except Overloaded:
                        outcomes["overloaded"] += 1
                        await trio.sleep(0.01)
                        continue
                    acked[order.id] = order.status

            async def one_order():
                try:
                    order = await engine.place_order({"a": 1})
                except Overloaded:
                    outcomes["overloaded"] += 1
                    return
                acked[order.id] = order.status

            async with trio.open_nursery() as load:
                for _ in range(50):
                    load.start_soon(buyer)
                await trio.sleep(0.3)
                # 1. the writer's session is killed under it
                assert await trio.to_thread.run_sync(terminate, postgres_dsn, "stockade_outage")
                await trio.sleep(0.3)
                # 2. the database becomes unreachable for a while
                proxy.cut()
                outage.set()
                overloaded_before = outcomes["overloaded"]
                for _ in range(200):  # shoppers keep arriving: the bounded journal pushes back
                    load.start_soon(one_order)
                await trio.sleep(0.3)
                during = engine.statistics()
                assert not during.journal.healthy
                assert (await engine.stock("a")).sku == "a"  # reads keep working
                await trio.sleep(0.7)
                assert outcomes["overloaded"] > overloaded_before  # the bounded journal is full
                acked_before_restore = len(acked)
                proxy.restore()
                with trio.fail_after(15):  # the writer's backoff is at most a few seconds
                    # Polling counters on purpose: there is no event for "healthy again".
                    while not engine.statistics().journal.healthy:  # noqa: ASYNC110
                        await trio.sleep(0.05)
                    while len(acked) <= acked_before_restore + 100:  # noqa: ASYNC110
                        await trio.sleep(0.05)  # service resumed
                stop.set()
            level = await engine.stock("a")
        proxy.stop()
    state = await trio.to_thread.run_sync(read_postgres, postgres_dsn)
    assert all(order_id in state.orders for order_id in acked), "acknowledged order lost"
    assert state.products["a"] == (level.on_hand, 0)
    assert len(state.orders) == 1_000_000 - level.on_hand


async def test_a_second_postgres_instance_waits_then_takes_over(postgres_dsn):
    worker = spawn_worker(postgres_dsn)  # its output is read in a thread below
    try:
        assert worker.stdout is not None
        assert await trio.to_thread.run_sync(worker.stdout.readline) == "ready\n"
        opened = trio.Event()

        async def standby():
            async with stockade.open_engine(postgres_dsn) as engine:
                opened.set()
                await engine.stock("a")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(standby)
            await trio.sleep(1.0)
            assert not opened.is_set()  # a hot standby: waiting on the owner's lock
            worker.send_signal(signal.SIGKILL)
            with trio.fail_after(15):
                await opened.wait()
        acked = [line.split()[0] for line in worker.stdout.read().splitlines() if " " in line]
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
    state = await trio.to_thread.run_sync(read_postgres, postgres_dsn)
    assert acked and all(order_id in state.orders for order_id in acked if len(order_id) == 32)


async def test_a_stale_owner_cannot_land_a_batch(postgres_dsn):
    dsn_a = postgres_dsn + "&application_name=stockade_owner_a"
    with pytest.raises(BaseExceptionGroup) as crashed:  # owner A's engine stops loudly
        async with stockade.open_engine(dsn_a) as engine_a:
            await engine_a.set_stock("a", 10)
            # A's session dies (as if its host vanished from the network) ...
            await trio.to_thread.run_sync(terminate, postgres_dsn, "stockade_owner_a")
            # ... and B takes over the store.
            async with stockade.open_engine(postgres_dsn) as engine_b:
                await engine_b.set_stock("a", 20)
                # A still believes it owns the store and sells; its batch must not land.
                with trio.move_on_after(5):
                    await engine_a.place_order({"a": 1})
    assert crashed.group_contains(StoreLost)
    state = await trio.to_thread.run_sync(read_postgres, postgres_dsn)
    assert state.products["a"] == (20, 0)
    assert not state.orders


async def test_standby_store_open_blocks_until_owner_closes(postgres_dsn):
    first = PostgresStore(postgres_dsn)
    await first.load(0.0)
    second = PostgresStore(postgres_dsn)
    loaded = trio.Event()

    async def open_second():
        await second.load(0.0)
        loaded.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_second)
        await trio.sleep(0.5)
        assert not loaded.is_set()
        start = time.monotonic()
        await first.aclose()
        with trio.fail_after(10):
            await loaded.wait()
        assert time.monotonic() - start < 10
    await second.aclose()
