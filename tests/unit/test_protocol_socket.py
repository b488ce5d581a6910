"""The protocol over a real Unix socket and TCP, in one process: the listener, the server
loop and open_remote_engine."""

from __future__ import annotations

import os
import stat

import pytest
import trio

import stockade
from stockade import Engine
from stockade.engine_process.listen import open_listener
from stockade.engine_process.serving import serve_listener
from stockade.protocol.addresses import parse_addresses


async def test_over_a_unix_socket(engine: Engine, tmp_path) -> None:
    path = str(tmp_path / "engine.sock")
    [address] = parse_addresses(f"unix:{path}")
    listener = await open_listener(address)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_listener(listener, engine, stop=stop, task_status=task_status)
        )
        async with stockade.open_remote_engine(f"unix:{path}") as remote:
            assert remote.connected
            await remote.set_stock("sku-1", 3)
            order = await remote.place_order({"sku-1": 2})
            assert order.status == "confirmed"
            assert (await engine.stock("sku-1")).on_hand == 1
        stop.set()  # serve_listener returns once every connection closed


async def test_over_tcp_with_a_secret(engine: Engine) -> None:
    [address] = parse_addresses("tcp://127.0.0.1:0")
    listener = await open_listener(address)
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_listener(
                listener, engine, secret=b"s3cret", task_status=task_status
            )
        )
        with pytest.raises(stockade.EngineRefused):
            async with stockade.open_remote_engine(f"tcp://127.0.0.1:{port}", secret="nope"):
                pass
        async with stockade.open_remote_engine(
            f"tcp://127.0.0.1:1,tcp://127.0.0.1:{port}", secret="s3cret"
        ) as remote:
            assert await remote.has_product("x") is False
            assert str(remote.address) == f"tcp://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


async def test_no_engine_answering_is_engine_unavailable(tmp_path) -> None:
    with pytest.raises(stockade.EngineUnavailable, match="no engine"):
        async with stockade.open_remote_engine(f"unix:{tmp_path}/none.sock", timeout_s=0.3):
            pass


async def test_run_engine_serves_handlers_and_runs_tasks_beside_until_stopped(tmp_path) -> None:
    from stockade.engine_process.main import EngineSettings, run_engine
    from stockade.protocol.calls import CallBase

    class Products(CallBase[int], tag="test.products"):
        pass

    beside_ran = trio.Event()

    async def beside(engine, store, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        beside_ran.set()
        await trio.sleep_forever()

    async def products(call: Products) -> int:
        return 42

    path = tmp_path / "e.sock"
    stop = trio.Event()
    settings = EngineSettings(f"sqlite:///{tmp_path}/s.db", "durable", f"unix:{path}")
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: run_engine(
                settings, handlers={Products: products}, beside=[beside], stop=stop,
                own_process=False, task_status=task_status,
            )
        )  # fmt: skip
        assert bound == [f"unix:{path}"] and beside_ran.is_set()
        async with stockade.open_remote_engine(bound[0]) as remote:
            assert await remote.call(Products()) == 42
            await remote.set_stock("sku-1", 2)
        stop.set()
    assert not path.exists()  # the socket file is removed on the way out


def test_tcp_without_a_secret_is_refused_before_anything_opens(tmp_path) -> None:
    from stockade.engine_process.main import EngineSettings, check_settings

    settings = EngineSettings(f"sqlite:///{tmp_path}/s.db", "durable", "tcp://127.0.0.1:7400")
    with pytest.raises(stockade.InvalidRequest, match="STOCKADE_ENGINE_SECRET"):
        check_settings(settings)
    assert not (tmp_path / "s.db").exists()
    assert check_settings(EngineSettings(listen="tcp://127.0.0.1:7400", secret=b"s"))


async def test_late_payments_and_returns_over_the_protocol(engine: Engine, tmp_path) -> None:
    path = str(tmp_path / "engine.sock")
    [address] = parse_addresses(f"unix:{path}")
    listener = await open_listener(address)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_listener(listener, engine, stop=stop, task_status=task_status)
        )
        async with stockade.open_remote_engine(f"unix:{path}") as remote:
            await remote.set_stock("a", 3)
            sold = await remote.place_order({"a": 3})
            back = await remote.return_units(sold.id, {"a": 1}, idempotency_key="rma")
            assert back.returned == {"a": 1}
            assert await remote.return_units(sold.id, {"a": 1}, idempotency_key="rma") == back
            with pytest.raises(stockade.ReturnConflict, match="not returned yet"):
                await remote.return_units(sold.id, {"a": 3}, restock=False)
            lost = await remote.return_units(sold.id, [("a", 2)], restock=False)
            assert (lost.status, lost.written_off) == ("cancelled", {"a": 2})
            held = await remote.place_order({"a": 1}, hold_for=60)
            assert (await remote.confirm(held.id, late=True)).status == "confirmed"
            assert (await engine.stock("a")).on_hand == 0
        stop.set()
