"""Server-Sent Event streams without HTTP, on trio's mock clock: product streams coalesce,
streams keep alive, end at their lifetime and at stop, and are bounded."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

import stockade
from stockade import MemoryStore
from stockade.api.port import LocalEngine
from stockade.api.problems import Problem
from stockade.api.sse import (
    KEEPALIVE,
    EventStream,
    ProductStream,
    ProductWatch,
    SseStream,
    Streams,
)
from stockade.engine.orders import from_timestamp


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    # durable: each call commits a batch of its own, so the events are the same every run
    async with stockade.open_engine(store=MemoryStore(), durability="durable") as engine:
        await engine.set_stock("a", 1000)
        yield engine


def streams(**kw: Any) -> Streams:
    return Streams(**{"max_streams": 10, "keepalive_s": 15.0, "lifetime_s": 3600.0, **kw})


def level_of(chunk: bytes) -> dict[str, Any]:
    lines = [line for line in chunk.split(b"\n") if line.startswith(b"data: ")]
    (data,) = lines
    value: dict[str, Any] = msgspec.json.decode(data[len(b"data: ") :])
    return value


async def test_a_product_stream_sends_the_newest_level_at_most_once_per_interval(
    engine, autojump_clock
):
    registry = streams(keepalive_s=100.0)
    watch = ProductWatch(LocalEngine(engine))
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        stream = ProductStream(registry, watch.watch("a"), await engine.stock("a"), 1.0)
        first = await stream.__anext__()
        assert first.startswith(b"retry: ") and level_of(first)["available"] == 1000
        sent: list[tuple[float, dict[str, Any]]] = []

        async def read() -> None:
            async for chunk in stream:
                assert chunk != KEEPALIVE
                sent.append((trio.current_time(), level_of(chunk)))

        nursery.start_soon(read)
        for _ in range(100):  # 100 changes over 5 s of the clock: 20 a second
            await engine.adjust_stock("a", -1)
            await trio.sleep(0.05)
        final = await engine.stock("a")
        await trio.sleep(2.0)  # the last change is sent within one interval
        nursery.cancel_scope.cancel()
    times = [at for at, _ in sent]
    assert 4 <= len(sent) <= 6  # coalesced: not 100 messages
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))
    assert sent[-1][1] == msgspec.to_builtins(final)  # the newest value, never a stale one
    availables = [level["available"] for _, level in sent]
    assert availables == sorted(availables, reverse=True)


async def test_a_product_stream_says_whether_the_product_is_on_sale(engine, autojump_clock):
    port = LocalEngine(engine)
    now = engine._clock()
    await engine.set_rules("a", opens_at=from_timestamp(now + 10))
    watch = ProductWatch(port)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        stream = ProductStream(
            streams(keepalive_s=100.0), watch.watch("a"), await engine.stock("a"), 1.0,
            await port.on_sale("a"), lambda: port.on_sale("a"),
        )  # fmt: skip
        first = level_of(await stream.__anext__())
        assert first == {"sku": "a", "on_hand": 1000, "reserved": 0, "available": 1000,
                         "on_sale": False}  # fmt: skip
        await trio.sleep(11)  # the window opens
        await engine.adjust_stock("a", -1)
        later = level_of(await stream.__anext__())
        assert (later["available"], later["on_sale"]) == (999, True)
        nursery.cancel_scope.cancel()


async def test_a_quiet_stream_keeps_alive_and_ends_at_its_lifetime(engine, autojump_clock):
    registry = streams(keepalive_s=10.0, lifetime_s=25.0)
    watch = ProductWatch(LocalEngine(engine))
    stream = ProductStream(registry, watch.watch("a"), await engine.stock("a"), 1.0)
    start = trio.current_time()
    chunks = [(chunk, trio.current_time() - start) async for chunk in stream]
    assert [c for c, _ in chunks[1:]] == [KEEPALIVE, KEEPALIVE]
    assert [t for _, t in chunks] == [0.0, 10.0, 20.0]
    assert len(registry) == 0  # it left the registry when it ended


async def test_stop_ends_every_stream_at_once_and_refuses_new_ones(engine, autojump_clock):
    registry = streams()
    watch = ProductWatch(LocalEngine(engine))
    product = ProductStream(registry, watch.watch("a"), await engine.stock("a"), 1.0)
    events = EventStream(registry, engine.events(engine.feed_head))
    ended: list[SseStream] = []

    async def drain(stream: SseStream) -> None:
        async for _ in stream:
            pass
        ended.append(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain, product)
        nursery.start_soon(drain, events)
        await trio.sleep(5.0)
        assert not ended and len(registry) == 2
        start = trio.current_time()
        registry.stop()
    assert trio.current_time() == start  # at once, not at a keep-alive or a lifetime
    assert set(ended) == {product, events} and len(registry) == 0
    with pytest.raises(Problem) as refused:
        registry.admit()
    assert (refused.value.status, refused.value.slug) == (503, "shutting-down")


async def test_streams_are_bounded_and_a_closed_or_dropped_one_frees_its_place(engine):
    registry = streams(max_streams=2)
    watch = ProductWatch(LocalEngine(engine))
    level = await engine.stock("a")
    one = ProductStream(registry, watch.watch("a"), level, 1.0)
    two = ProductStream(registry, watch.watch("a"), level, 1.0)
    with pytest.raises(Problem) as refused:
        registry.admit()
    assert (refused.value.status, refused.value.slug) == (503, "too-many-streams")
    assert refused.value.headers == {"Retry-After": "5"} and registry.refused == 1
    await one.aclose()
    registry.admit()
    del two  # a response that was never sent: its stream is dropped unstarted
    assert len(registry) == 0


async def test_an_event_stream_sends_each_event_once_with_its_seq(engine, autojump_clock):
    registry = streams()
    for _ in range(3):
        await engine.place_order({"a": 1})
    stream = EventStream(registry, engine.events(0))
    await stream.__anext__()  # retry
    chunks = [await stream.__anext__() for _ in range(8)]
    written, head = await engine.event_page(0, 100)
    assert head == 8 and stream.cursor == 8
    for chunk, event in zip(chunks, written, strict=True):
        assert chunk.startswith(b"id: %d\nevent: %s\ndata: " % (event.seq, event.type.encode()))
        assert msgspec.json.decode(chunk.split(b"data: ")[1]) == msgspec.to_builtins(event)


async def test_streams_and_the_product_watch_end_when_the_engine_closes(autojump_clock):
    registry = streams()
    ended: list[str] = []

    async def drain(stream: SseStream) -> None:
        async for _ in stream:
            pass
        ended.append("stream")

    async def watch_until_closed(watch: ProductWatch) -> None:
        await watch.run()
        ended.append("watch")

    async with trio.open_nursery() as nursery:
        async with stockade.open_engine(store=MemoryStore(), durability="durable") as engine:
            nursery.start_soon(drain, EventStream(registry, engine.events(engine.feed_head or 0)))
            nursery.start_soon(watch_until_closed, ProductWatch(LocalEngine(engine)))
            await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(1):  # at the engine's closing, not at a keep-alive
            while len(ended) < 2:  # noqa: ASYNC110
                await trio.sleep(0.01)
    assert sorted(ended) == ["stream", "watch"] and len(registry) == 0


async def test_a_product_stream_shows_a_location_deactivated_and_reactivated(
    engine, autojump_clock
):
    await engine.set_location("annex")
    await engine.set_stock("b", 4, "annex")
    watch = ProductWatch(LocalEngine(engine))
    async with trio.open_nursery() as nursery:
        await nursery.start(watch.run)
        stream = ProductStream(streams(keepalive_s=100.0), watch.watch("b"),
                               await engine.stock("b"), 1.0)  # fmt: skip
        assert level_of(await stream.__anext__())["available"] == 4
        await engine.set_location("annex", active=False)
        assert level_of(await stream.__anext__())["available"] == 0
        await engine.set_location("annex", active=True)
        assert level_of(await stream.__anext__())["available"] == 4
        nursery.cancel_scope.cancel()
