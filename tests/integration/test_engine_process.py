"""The real ``stockade engine`` subprocess, driven with ``open_remote_engine``: over a Unix
socket and over TCP with a secret, a last-unit rush from two clients, kill -9 and SIGSTOP."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import stockade
from tests.integration.engine_process import EngineProcess


@pytest.fixture
def engines() -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for engine in started:
        engine.kill()


def _engine(engines: list[EngineProcess], *args: object, **kwargs: object) -> EngineProcess:
    engine = EngineProcess(*args, **kwargs)  # type: ignore[arg-type]
    engines.append(engine)
    return engine.start()


async def test_a_last_unit_rush_from_two_clients_over_a_unix_socket(tmp_path: Path, engines):
    engine = _engine(engines, tmp_path, f"sqlite:///{tmp_path}/stock.db", f"unix:{tmp_path}/e.sock")
    sold = 0
    async with (
        stockade.open_remote_engine(engine.url) as first,
        stockade.open_remote_engine(engine.url) as second,
    ):
        await first.set_stock("hot", 25)

        async def buyer(remote: stockade.RemoteEngine) -> None:
            nonlocal sold
            try:
                await remote.place_order({"hot": 1})
                sold += 1
            except stockade.OutOfStock:
                pass

        async with trio.open_nursery() as nursery:
            for n in range(200):
                nursery.start_soon(buyer, first if n % 2 else second)
        assert sold == 25
        assert await second.stock("hot") == stockade.StockLevel("hot", 0, 0, 0)
    assert engine.stop() == 0
    async with stockade.open_engine(f"sqlite:///{tmp_path}/stock.db") as local:
        assert (await local.stock("hot")).on_hand == 0
        assert len(await local.list_orders(limit=1000)) == 25


async def test_tcp_with_a_secret_and_a_wrong_secret_refused(tmp_path: Path, engines):
    engine = _engine(engines, tmp_path, f"sqlite:///{tmp_path}/stock.db", "tcp://127.0.0.1:0",
                     secret="right-secret")  # fmt: skip
    with pytest.raises(stockade.EngineRefused, match="did not prove"):
        async with stockade.open_remote_engine(engine.url, secret="wrong-secret"):
            pass
    with pytest.raises(stockade.EngineRefused, match="requires STOCKADE_ENGINE_SECRET"):
        async with stockade.open_remote_engine(engine.url):
            pass
    async with stockade.open_remote_engine(engine.url, secret="right-secret") as remote:
        await remote.set_stock("sku-1", 3)
        assert (await remote.place_order({"sku-1": 3})).status == "confirmed"
    refused = [line for line in engine.lines() if "refused a connection" in line.get("message", "")]
    assert refused and all(line["role"] == "engine" for line in refused)
    assert engine.stop() == 0


async def test_kill_9_fails_calls_in_flight_and_the_client_follows_a_new_engine(
    tmp_path: Path, engines
):
    database, listen = f"sqlite:///{tmp_path}/stock.db", f"unix:{tmp_path}/e.sock"
    engine = _engine(engines, tmp_path, database, listen)
    acknowledged: set[str] = set()
    enough = trio.Event()
    unavailable = 0
    async with stockade.open_remote_engine(engine.url, timeout_s=2.0) as remote:
        await remote.set_stock("sku-1", 1_000_000)

        async def buyer(n: int) -> None:
            nonlocal unavailable
            for i in range(10_000):
                try:
                    order = await remote.place_order({"sku-1": 1}, idempotency_key=f"{n}-{i}")
                except stockade.EngineUnavailable:
                    unavailable += 1
                    return
                acknowledged.add(order.id)
                if len(acknowledged) >= 200:
                    enough.set()

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(buyer, n)
            await enough.wait()
            killed_at = time.monotonic()
            engine.process.kill()  # type: ignore[union-attr]
        assert time.monotonic() - killed_at < 2.5  # every call in flight failed promptly
        assert unavailable == 20
        assert not remote.connected
        engine.process.wait(10)  # type: ignore[union-attr]
        _engine(engines, tmp_path, database, listen)
        with trio.fail_after(10):
            await remote.wait_connected()
        for order_id in acknowledged:
            assert (await remote.get_order(order_id)).status == "confirmed"
        level = await remote.stock("sku-1")
        assert level.on_hand <= 1_000_000 - len(acknowledged)


async def test_a_paused_engine_times_calls_out_and_recovers(tmp_path: Path, engines):
    engine = _engine(engines, tmp_path, f"sqlite:///{tmp_path}/stock.db", f"unix:{tmp_path}/e.sock")
    async with stockade.open_remote_engine(engine.url, timeout_s=1.0) as remote:
        await remote.set_stock("sku-1", 10)
        engine.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(stockade.EngineUnavailable):
                await remote.stock("sku-1")
            assert time.monotonic() - started < 1.5
        finally:
            engine.signal(signal.SIGCONT)
        with trio.fail_after(10):
            await remote.wait_connected()
        deadline = time.monotonic() + 10
        while True:  # the link may be re-made once the engine answers again
            try:
                assert (await remote.stock("sku-1")).on_hand == 10
                break
            except stockade.EngineUnavailable:
                assert time.monotonic() < deadline
                await trio.sleep(0.1)
    assert engine.stop() == 0
