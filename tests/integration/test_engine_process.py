"""The real ``stockade engine`` subprocess, driven with ``open_remote_engine``: over a Unix
socket and over TCP with a secret, a last-unit rush from two clients, kill -9 and SIGSTOP."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Iterator
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


async def _buy_until_it_fails(
    remote: stockade.RemoteEngine, fault: Callable[[], None], after: int
) -> tuple[set[str], dict[type[Exception], int]]:
    """20 buyers place orders (each with idempotency keys of its own) until a call fails with
    EngineUnavailable or EngineClosed; ``fault()`` runs once ``after`` are acknowledged. The
    acknowledged order ids, and how many buyers each error stopped."""
    acknowledged: set[str] = set()
    failed: dict[type[Exception], int] = {}
    enough = trio.Event()

    async def buyer(n: int) -> None:
        for i in itertools.count():
            try:
                order = await remote.place_order({"sku-1": 1}, idempotency_key=f"{n}-{i}")
            except (stockade.EngineUnavailable, stockade.EngineClosed) as error:
                failed[type(error)] = failed.get(type(error), 0) + 1
                return
            acknowledged.add(order.id)
            if len(acknowledged) >= after:
                enough.set()

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(buyer, n)
        await enough.wait()
        fault()
    return acknowledged, failed


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


async def test_tcp_with_a_secret_and_a_wrong_secret_refused(tmp_path: Path, engines, monkeypatch):
    engine = _engine(engines, tmp_path, f"sqlite:///{tmp_path}/stock.db", "tcp://127.0.0.1:0",
                     secret="right-secret")  # fmt: skip
    monkeypatch.delenv("STOCKADE_ENGINE_SECRET", raising=False)
    with pytest.raises(stockade.EngineRefused, match="did not prove"):
        async with stockade.open_remote_engine(engine.url, secret="wrong-secret"):
            pass
    with pytest.raises(stockade.EngineRefused, match="requires STOCKADE_ENGINE_SECRET"):
        async with stockade.open_remote_engine(engine.url):
            pass
    async with stockade.open_remote_engine(engine.url, secret="right-secret") as remote:
        await remote.set_stock("sku-1", 3)
        assert (await remote.place_order({"sku-1": 3})).status == "confirmed"
    monkeypatch.setenv("STOCKADE_ENGINE_SECRET", "right-secret")  # read when none is given
    async with stockade.open_remote_engine(engine.url) as remote:
        assert (await remote.stock("sku-1")).on_hand == 0
    refused = [line for line in engine.lines() if "refused a connection" in line.get("message", "")]
    assert refused and all(line["role"] == "engine" for line in refused)
    assert engine.stop() == 0


async def test_kill_9_fails_calls_in_flight_and_the_client_follows_a_new_engine(
    tmp_path: Path, engines
):
    database, listen = f"sqlite:///{tmp_path}/stock.db", f"unix:{tmp_path}/e.sock"
    engine = _engine(engines, tmp_path, database, listen)
    async with stockade.open_remote_engine(engine.url, timeout_s=2.0) as remote:
        await remote.set_stock("sku-1", 1_000_000)
        killed_at = 0.0

        def kill() -> None:
            nonlocal killed_at
            killed_at = time.monotonic()
            engine.process.kill()  # type: ignore[union-attr]

        acknowledged, failed = await _buy_until_it_fails(remote, kill, 200)
        assert time.monotonic() - killed_at < 4.0  # promptly: within the timeout (2 s), no hang
        assert failed == {stockade.EngineUnavailable: 20}
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
            assert (
                time.monotonic() - started < 3.0
            )  # the timeout (1 s), with room for a busy machine
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


async def test_clients_follow_the_postgresql_standby_when_the_owner_dies(
    tmp_path: Path, engines, postgres_dsn: str
):
    owner = _engine(engines, tmp_path, postgres_dsn, f"unix:{tmp_path}/owner.sock")
    standby = EngineProcess(tmp_path, postgres_dsn, f"unix:{tmp_path}/standby.sock")
    engines.append(standby)
    standby.launch()
    url = f"unix:{tmp_path}/owner.sock,unix:{tmp_path}/standby.sock"
    acknowledged = []
    async with stockade.open_remote_engine(url, timeout_s=2.0) as remote:
        assert str(remote.address) == f"unix:{tmp_path}/owner.sock"
        await remote.set_stock("sku-1", 100)
        for _ in range(10):
            acknowledged.append((await remote.place_order({"sku-1": 1})).id)
        with trio.fail_after(20):
            while not any(line["event"] == "starting" for line in standby.lines()):  # noqa: ASYNC110 (a log file)
                await trio.sleep(0.05)
        await trio.sleep(0.3)
        assert not (tmp_path / "standby.sock").exists()  # it waits for the store, unbound
        assert not any(line["event"] == "listening" for line in standby.lines())
        owner.process.kill()  # type: ignore[union-attr]
        owner.process.wait(10)  # type: ignore[union-attr]
        await trio.to_thread.run_sync(standby.wait_listening, 60)
        with trio.fail_after(30):
            while not (remote.connected and remote.address is not None):
                await remote.wait_connected()
        assert str(remote.address) == f"unix:{tmp_path}/standby.sock"
        for order_id in acknowledged:
            assert (await remote.get_order(order_id)).status == "confirmed"
        assert (await remote.stock("sku-1")).on_hand == 90
    assert standby.stop() == 0


async def test_sigterm_under_load_answers_or_refuses_and_loses_nothing(tmp_path: Path, engines):
    database, listen = f"sqlite:///{tmp_path}/stock.db", f"unix:{tmp_path}/e.sock"
    engine = _engine(engines, tmp_path, database, listen)
    async with stockade.open_remote_engine(engine.url, timeout_s=5.0) as remote:
        await remote.set_stock("sku-1", 1_000_000)
        acknowledged, failed = await _buy_until_it_fails(
            remote, lambda: engine.signal(signal.SIGTERM), 300
        )
        assert set(failed) <= {stockade.EngineClosed, stockade.EngineUnavailable}
        assert sum(failed.values()) == 20
    assert engine.process.wait(20) == 0  # type: ignore[union-attr]
    assert any(line["event"] == "stopped" for line in engine.lines())
    async with stockade.open_engine(database) as local:
        for order_id in acknowledged:
            assert (await local.get_order(order_id)).status == "confirmed"
        placed = 1_000_000 - (await local.stock("sku-1")).on_hand
        assert placed >= len(acknowledged)  # an order cut off in flight may exist, unacknowledged
