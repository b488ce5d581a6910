"""The client and the server over in-memory streams: calls, errors, many in flight, streams,
cancellation, bad frames, the handshake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

import stockade
from stockade import Engine
from stockade.protocol.addresses import Address
from stockade.protocol.client import RemoteEngine
from stockade.protocol.server import serve_connection


@asynccontextmanager
async def linked(
    engine: Engine,
    *,
    secret: bytes | None = None,
    client_secret: bytes | None = None,
    timeout_s: float = 5.0,
    **server: object,
) -> AsyncIterator[RemoteEngine]:
    refused: stockade.EngineRefused | None = None
    async with trio.open_nursery() as nursery:

        async def connector(address: Address) -> trio.abc.Stream:
            client, server_end = trio.testing.memory_stream_pair()
            nursery.start_soon(
                partial(serve_connection, server_end, engine, secret=secret, **server)  # type: ignore[arg-type]
            )
            return client

        remote = RemoteEngine(
            [Address("unix", path="memory")],
            secret=client_secret,
            timeout_s=timeout_s,
            connector=connector,
        )
        nursery.start_soon(remote.run)
        try:
            with trio.fail_after(5):
                await remote.wait_connected()
        except stockade.EngineRefused as error:
            refused = error
            nursery.cancel_scope.cancel()
        else:
            yield remote
            nursery.cancel_scope.cancel()
    if refused is not None:
        raise refused


async def test_calls_return_the_engines_values(engine: Engine) -> None:
    async with linked(engine) as remote:
        level = await remote.set_stock("sku-1", 10)
        assert level == stockade.StockLevel("sku-1", 10, 0, 10)
        order = await remote.place_order({"sku-1": 3}, hold_for=60, idempotency_key="k-1")
        assert order == await engine.get_order(order.id)
        assert await remote.confirm(order.id) == await engine.get_order(order.id)
        assert await remote.stock("sku-1") == await engine.stock("sku-1")
        assert await remote.stock_by_location("sku-1") == await engine.stock_by_location("sku-1")
        assert await remote.has_product("sku-1") is True
        assert await remote.has_product("nope") is False
        assert await remote.products() == engine.products()
        assert await remote.locations() == engine.locations()
        assert await remote.feed_head() == engine.feed_head
        stats = await remote.statistics()
        assert isinstance(stats, stockade.EngineStatistics)
        assert stats.placed == 1
        page, cursor = await remote.event_page(0, 10)
        assert page and all(isinstance(event, stockade.Event) for event in page)
        assert (page, cursor) == await engine.event_page(0, 10)


async def test_errors_come_back_as_the_same_classes(engine: Engine) -> None:
    async with linked(engine) as remote:
        await remote.set_stock("sku-1", 1)
        with pytest.raises(stockade.OutOfStock) as caught:
            await remote.place_order({"sku-1": 2})
        assert caught.value.shortages == {"sku-1": (2, 1)}
        with pytest.raises(stockade.UnknownProduct) as unknown:
            await remote.stock("sku-2")
        assert unknown.value.sku == "sku-2"
        with pytest.raises(stockade.InvalidRequest, match="delta must not be zero"):
            await remote.adjust_stock("sku-1", 0)
        with pytest.raises(stockade.InvalidRequest):  # a type the engine's decoder refuses
            await remote.set_stock("sku-1", "ten")  # type: ignore[arg-type]
        with pytest.raises(stockade.InvalidRequest, match="cannot send"):  # nor msgpack
            await remote.set_stock("sku-1", 2**70)
        with pytest.raises(stockade.InvalidRequest, match="cannot send"):
            await remote.set_stock(object(), 1)  # type: ignore[arg-type]
        with pytest.raises(stockade.FeedGone) as gone:
            await remote.event_page(10_000)
        assert gone.value.last == engine.feed_head
        assert await remote.stock("sku-1") == stockade.StockLevel("sku-1", 1, 0, 1)


async def test_many_calls_in_flight_are_answered_each_with_its_own(engine: Engine) -> None:
    async with linked(engine) as remote:
        for n in range(50):
            await engine.set_stock(f"sku-{n}", n + 1)
        results: dict[int, stockade.StockLevel] = {}

        async def ask(n: int) -> None:
            results[n] = await remote.stock(f"sku-{n}")

        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(ask, n)
        assert {n: r.on_hand for n, r in results.items()} == {n: n + 1 for n in range(50)}


async def test_a_last_unit_rush_sells_exactly_the_stock(engine: Engine) -> None:
    async with linked(engine) as remote:
        await remote.set_stock("hot", 7)
        sold = 0

        async def buy() -> None:
            nonlocal sold
            try:
                await remote.place_order({"hot": 1})
                sold += 1
            except stockade.OutOfStock:
                pass

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(buy)
        assert sold == 7
        assert (await engine.stock("hot")).on_hand == 0


async def test_a_wrong_secret_is_refused_clearly(engine: Engine) -> None:
    with pytest.raises(stockade.EngineRefused, match="did not prove"):
        async with linked(engine, secret=b"right", client_secret=b"wrong"):
            pass
    with pytest.raises(stockade.EngineRefused, match="requires STOCKADE_ENGINE_SECRET"):
        async with linked(engine, secret=b"right"):
            pass
    with pytest.raises(stockade.EngineRefused, match="did not prove"):
        async with linked(engine, client_secret=b"mine"):  # an engine that cannot prove it
            pass
    async with linked(engine, secret=b"right", client_secret=b"right") as remote:
        assert await remote.has_product("x") is False


async def test_events_stream_with_backpressure(engine: Engine) -> None:
    async with linked(engine) as remote:
        await remote.set_stock("sku-1", 1000)
        for _ in range(5):
            await remote.place_order({"sku-1": 1})
        seen = []
        async with remote.events(0, ["order.placed"]) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 5:
                    break
        assert [e.type for e in seen] == ["order.placed"] * 5
        assert seen == [e async for e in _take(engine.events(0, ["order.placed"]), 5)]


async def _take(iterator: AsyncIterator[stockade.Event], n: int) -> AsyncIterator[stockade.Event]:
    for _ in range(n):
        yield await iterator.__anext__()


async def test_replies_come_back_out_of_order_to_their_own_callers(engine: Engine) -> None:
    from stockade.protocol.calls import CallBase

    class Echo(CallBase[str], tag="test.echo"):
        text: str
        wait: bool

    release = trio.Event()
    order: list[str] = []

    async def echo(call: Echo) -> str:
        if call.wait:
            await release.wait()
        return call.text

    async with linked(engine, handlers={Echo: echo}) as remote:

        async def ask(text: str, wait: bool) -> None:
            assert await remote.call(Echo(text, wait)) == text
            order.append(text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first, slow", True)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, "second, fast", False)
            await trio.testing.wait_all_tasks_blocked()
            assert order == ["second, fast"]
            release.set()
    assert order == ["second, fast", "first, slow"]
