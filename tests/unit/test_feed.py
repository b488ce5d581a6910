"""The change feed through the engine: numbering, history then live, slow readers, bounds."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import trio

import stockade
from stockade import FeedGone, InvalidRequest, MemoryStore
from stockade.engine import feed


async def drain(
    engine: stockade.Engine, after: int, count: int, **kw: object
) -> list[stockade.Event]:
    out: list[stockade.Event] = []
    with trio.fail_after(5):
        async for event in engine.events(after, **kw):  # type: ignore[arg-type]
            out.append(event)
            if len(out) == count:
                return out
    raise AssertionError("the feed ended")


async def test_every_commit_yields_numbered_events_of_what_changed(engine):
    await engine.set_stock("a", 2)
    held = await engine.place_order({"a": 2}, hold_for=60)
    await engine.confirm(held.id)
    await engine.adjust_stock("a", 1, reason="found one")
    events, cursor = await engine.event_page(0, 100)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and cursor == len(events)
    kinds = [e.type for e in events]
    assert kinds == [
        "stock.changed", "product.back_in_stock",       # set_stock
        "order.placed", "stock.changed", "product.sold_out",  # the hold took the last units
        "order.confirmed", "stock.changed",             # sold
        "stock.changed", "product.back_in_stock",       # the adjustment
    ]  # fmt: skip
    placed = events[2].data
    assert placed["id"] == held.id and placed["status"] == "reserved"
    assert placed["allocations"] == {"a": {"default": 2}}
    level = events[3].data
    assert level["location_level"] == {"sku": "a", "location": "default", "on_hand": 2,
                                       "reserved": 2, "available": 0, "active": True}  # fmt: skip
    assert level["stock_level"] == {"sku": "a", "on_hand": 2, "reserved": 2, "available": 0}
    only_orders, _ = await engine.event_page(0, 100, types=["order.placed", "order.confirmed"])
    assert [e.type for e in only_orders] == ["order.placed", "order.confirmed"]


async def test_a_reader_gets_history_then_live_with_no_gap_and_no_duplicate(engine):
    await engine.set_stock("a", 1000)
    for _ in range(5):
        await engine.place_order({"a": 1})
    got: list[stockade.Event] = []
    reader = engine.events(0)
    got.append(await reader.__anext__())  # the reader starts on the history
    for _ in range(10):  # ... and more commits while it reads
        await engine.place_order({"a": 1})
        got.append(await reader.__anext__())
    written, head = await engine.event_page(0, 1000)
    with trio.fail_after(5):
        while got[-1].seq < head:
            got.append(await reader.__anext__())
    assert got == written


async def test_a_slow_reader_falls_back_to_the_store_and_misses_nothing(engine, monkeypatch):
    monkeypatch.setattr(feed, "RING_SIZE", 4)  # the live ring holds only 4 events
    async with stockade.open_engine(store=MemoryStore(keep_movements=True)) as small:
        await small.set_stock("a", 1000)
        reader = small.events(0)
        first = await reader.__anext__()
        for _ in range(30):  # the reader does not read meanwhile: it falls far behind the ring
            await small.place_order({"a": 1})
        written, head = await small.event_page(0, 1000)  # (commits coalesce stock events)
        assert head == len(written) > 4 + 30
        with trio.fail_after(5):
            rest = [await reader.__anext__() for _ in range(head - 1)]
    assert [first, *rest] == written


async def test_positions_the_feed_cannot_serve_are_refused(engine):
    await engine.set_stock("a", 3)
    _, head = await engine.event_page(0)
    with pytest.raises(FeedGone):
        await engine.event_page(head + 1)
    with pytest.raises(FeedGone):
        await drain(engine, head + 5, 1)
    for bad in (-1, "3", 1.5):
        with pytest.raises(InvalidRequest):
            await engine.event_page(bad)
    with pytest.raises(InvalidRequest):
        await engine.event_page(0, types=["order.shipped"])
    with pytest.raises(InvalidRequest):
        await engine.event_page(0, limit=0)


async def test_pruned_events_are_gone_for_a_reader_from_before_them():
    store = MemoryStore()
    async with stockade.open_engine(  # durable: each set_stock is its own commit
        store=store, durability="durable", event_retention=timedelta(days=1)
    ) as engine:
        await engine.set_stock("a", 3)
        await engine.set_stock("a", 4)
        pruned = await store.prune_events(before=float("inf"), limit=2)
        assert pruned == 2
        with pytest.raises(FeedGone) as gone:
            await engine.event_page(0)
        assert gone.value.first == 3
        events, _ = await engine.event_page(2)
        assert [e.seq for e in events] == [3]  # the second set: stock.changed only


async def test_a_store_that_keeps_nothing_has_no_feed():
    async with stockade.open_engine(None) as engine:
        with pytest.raises(FeedGone):
            await engine.event_page(0)


async def test_the_feed_can_be_switched_off():
    store = MemoryStore(feed=False)
    async with stockade.open_engine(store=store) as engine:
        await engine.set_stock("a", 1)
        assert store.state.events == []


async def test_order_moves_have_exactly_one_event_each(engine):
    await engine.set_stock("a", 100)
    await engine.set_location("north", priority=1)
    await engine.set_stock("a", 5, location="north")
    orders = [await engine.place_order({"a": 1}, hold_for=60) for _ in range(6)]
    await engine.confirm(orders[0].id)
    await engine.cancel(orders[1].id)
    await engine.cancel(orders[0].id)  # a return
    await engine.change_order(orders[2].id, {"a": 3})
    await engine.extend(orders[3].id, 120)
    await engine.transfer("a", 2, "north", "default")
    events, _ = await engine.event_page(0, 1000)
    counts = Counter(e.type for e in events if e.type.startswith("order."))
    assert counts == {"order.placed": 6, "order.confirmed": 1, "order.cancelled": 2,
                      "order.changed": 1, "order.extended": 1}  # fmt: skip
    moved = [e.data["location_level"]["location"] for e in events[-2:]]
    assert sorted(moved) == ["default", "north"]  # a transfer moves both locations
