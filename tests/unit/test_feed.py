"""The change feed through the engine: numbering, history then live, slow readers, bounds."""

from __future__ import annotations

import gc
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

import stockade
from stockade import FeedGone, InvalidRequest, MemoryStore
from stockade.engine import feed
from tests.fakes import UnheardStore


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


async def test_a_batch_committed_but_unheard_leaves_no_gap_for_live_readers(autojump_clock):
    """The store commits a batch but its answer is lost: the journal retries, the store finds
    the batch already there and yields no events, so the hub never sees that batch's events.
    A live reader must still get every event in seq order, reading the missing ones from the
    store, neither skipping them nor spinning on a ring with a hole in it."""
    store = UnheardStore()
    async with stockade.open_engine(store=store, durability="durable") as engine:
        await engine.set_stock("a", 5)
        _, before = await engine.event_page(0)
        store.lose_answer = True
        await engine.set_stock("b", 5)  # lands, is retried, publishes nothing
        assert engine.statistics().journal.store_errors == 1
        await engine.set_stock("c", 5)
        written, head = await engine.event_page(before)
        for after in range(before, head):
            assert await drain(engine, after, head - after) == written[after - before :]


async def test_a_live_reader_gets_an_unheard_batch_without_waiting_for_the_next(
    autojump_clock,
):
    """The events of a batch whose commit landed unheard are in the store only; a reader
    waiting for them gets them once the journal is past the batch, not whenever something
    else happens to commit (a quiet shop's webhooks would wait that long)."""
    store = UnheardStore()
    async with stockade.open_engine(store=store, durability="durable") as engine:
        await engine.set_stock("a", 5)
        _, before = await engine.event_page(0)
        store.lose_answer = True
        reader = engine.events(before)
        got: list[stockade.Event] = []

        async def read_two() -> None:
            got.extend([await reader.__anext__(), await reader.__anext__()])

        with trio.fail_after(60):  # nothing else commits: without the events, a deadlock
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_two)
                await trio.testing.wait_all_tasks_blocked()  # the reader waits live
                await engine.set_stock("b", 5)  # lands, is retried, publishes nothing
        written, _ = await engine.event_page(before)
        assert got == written  # b's stock.changed and back_in_stock


async def test_a_failed_catch_up_read_never_stops_the_writer(autojump_clock):
    class Unreadable(UnheardStore):
        async def feed_bounds(self) -> tuple[int, int]:
            raise RuntimeError("the readers' pool cannot connect")

    store = Unreadable()
    async with stockade.open_engine(store=store, durability="durable") as engine:
        store.lose_answer = True
        await engine.set_stock("a", 5)  # lands, is retried; reading the head then fails
        await engine.set_stock("b", 5)  # the writer goes on
        assert store.state.products == {"a": (5, 0), "b": (5, 0)}
        assert "readers' pool" in (engine._journal.last_error or "")  # type: ignore[attr-defined]


def test_the_hub_sends_readers_to_the_store_across_a_gap_in_what_it_was_given():
    hub = feed.FeedHub()
    at = datetime.now(UTC).timestamp()
    hub.publish([(seq, "stock.changed", at, "s", "{}") for seq in (1, 2)])
    hub.publish([(seq, "stock.changed", at, "s", "{}") for seq in (5, 6)])  # 3, 4 unheard
    for after in (0, 1, 2, 3):
        assert hub.since(after) is None  # read the store
    fresh = hub.since(4)
    assert fresh is not None and [e.seq for e in fresh[0]] == [5, 6] and fresh[1] == 6
    assert hub.since(6) == ([], 6)


def test_the_hub_decodes_each_event_once_for_every_reader():
    hub = feed.FeedHub()
    hub.publish([(1, "product.sold_out", 1767225600.5, "a", '{"sku": "a"}')])
    first, again = hub.since(0), hub.since(0)
    assert first is not None and again is not None
    assert first[0][0] is again[0][0]
    assert first[0][0] == stockade.Event(
        1, "product.sold_out", datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC), {"sku": "a"}
    )


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
            await engine.event_page(1)  # a reader that had read event 1: it missed event 2
        assert gone.value.first == 3
        events, _ = await engine.event_page(2)
        assert [e.seq for e in events] == [3]  # the second set: stock.changed only
        # a reader with no position yet (after=0) starts at the oldest event kept
        fresh, cursor = await engine.event_page(0)
        assert [e.seq for e in fresh] == [3] and cursor == 3
        reader = engine.events(0)
        assert (await reader.__anext__()).seq == 3


async def test_a_live_reader_ends_when_the_engine_closes():
    ended: list[BaseException] = []
    async with stockade.open_engine(store=MemoryStore()) as engine:
        await engine.set_stock("a", 1)

        async def read() -> None:
            try:
                async for _ in engine.events(0):
                    pass
            except stockade.EngineClosed as exc:
                ended.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            await engine.aclose()  # (open_engine's exit would wait for the reader otherwise)
    assert len(ended) == 1


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


async def test_the_head_is_the_newest_committed_seq(engine):
    assert engine.feed_head == 0
    await engine.set_stock("a", 1)
    _, head = await engine.event_page(0, 100)
    assert engine.feed_head == head == 2  # stock.changed, product.back_in_stock
    async with stockade.open_engine(None) as nothing_kept:
        assert nothing_kept.feed_head is None


def test_the_hub_passes_over_unwanted_events_without_decoding_them():
    hub = feed.FeedHub()
    hub.publish([(1, "order.placed", 1.0, None, "not json: never decoded"),
                 (2, "stock.changed", 1.0, "a", '{"sku": "a"}'),
                 (3, "order.placed", 1.0, None, "not json either")])  # fmt: skip
    fresh = hub.since(0, ("stock.changed",))
    assert fresh is not None
    events, last = fresh
    assert [e.seq for e in events] == [2] and last == 3


async def test_a_reader_of_some_types_moves_its_cursor_past_the_others(engine):
    await engine.set_stock("a", 10)
    head = engine.feed_head
    reader = engine.events(head, ["product.sold_out"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.place_order, {"a": 4})  # live: no sold_out among them
        with trio.move_on_after(0.2):
            await reader.__anext__()
            raise AssertionError("no product.sold_out was committed")
        assert reader.cursor == engine.feed_head  # passed over, not left to re-read
        nursery.start_soon(engine.place_order, {"a": 6})
        with trio.fail_after(5):
            event = await reader.__anext__()
    assert event.type == "product.sold_out" and event.data["sku"] == "a"
    assert reader.cursor == event.seq


def test_the_ring_adds_nothing_for_the_collector_to_walk():
    # the ring keeps 10,000 events; tracked, every full collection would walk them all
    hub = feed.FeedHub()
    hub.publish([(1, "order.placed", 1.0, None, '{"id":"o"}'), (2, "x", 1.0, "a", "{}")])
    kept = list(hub._ring)
    assert kept and not any(gc.is_tracked(k) for k in kept)
    read = hub.since(0)
    assert read is not None
    events, head = read
    assert head == 2 and [e.seq for e in events] == [1, 2] and events[0].data == {"id": "o"}
    assert not any(gc.is_tracked(k) for k in kept)  # nor once their events are decoded
