"""Retirement and history through the engine (design.md §11): finished orders leave memory once
their idempotency window has passed and every call still works on them; list_orders and
movements page through what the store committed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio

import stockade
from stockade import (
    Engine,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    MemoryStore,
    Order,
    OrderNotFound,
    StockLevel,
    UnknownProduct,
)
from stockade.engine.core import RETIRE_INTERVAL_S
from tests.paging import all_movements, all_orders, newest_first

T0 = 1_000_000_000.0
TTL = 60.0


@pytest.fixture
async def shop(store: MemoryStore) -> AsyncIterator[Engine]:
    """An engine keeping history in a memory store, with a one-minute idempotency window;
    its clock starts at T0 (the tests run it on the mock clock)."""
    async with stockade.open_engine(
        store=store, durability="durable", idempotency_ttl=timedelta(seconds=TTL),
        wall_clock=lambda: T0 + trio.current_time(),
    ) as engine:  # fmt: skip
        await engine.set_stock("a", 100)
        await engine.set_stock("b", 100)
        yield engine


async def past_the_window(seconds: float = TTL) -> None:
    """Sleep past the idempotency window and one retirement pass."""
    await trio.sleep(seconds + 2 * RETIRE_INTERVAL_S)


# -- retirement -------------------------------------------------------------------------------


async def test_finished_orders_leave_memory_and_still_answer(shop, store, autojump_clock):
    confirmed = await shop.confirm((await shop.place_order({"a": 2}, hold_for=600)).id)
    sold = await shop.place_order({"a": 1})
    cancelled = await shop.cancel((await shop.place_order({"b": 1}, hold_for=600)).id)
    expired = await shop.place_order({"b": 3}, hold_for=5)
    held = await shop.place_order({"a": 4}, hold_for=600)
    await trio.sleep(5)
    expired = await shop.get_order(expired.id)
    assert expired.status == "expired"
    assert shop.statistics().orders == 5
    await past_the_window()
    stats = shop.statistics()
    assert stats.orders == 1 and stats.retired == 4  # only the open hold stays
    for order in (confirmed, sold, cancelled, expired, held):
        assert await shop.get_order(order.id) == order
    assert shop.statistics().orders == 1  # reading does not load them back
    with pytest.raises(OrderNotFound):
        await shop.get_order("never-placed")
    assert await shop.stock("a") == StockLevel("a", 97, 4, 93)


async def test_calls_on_retired_orders_work_as_before(shop, store, autojump_clock):
    confirmed = await shop.confirm((await shop.place_order({"a": 2}, hold_for=600)).id)
    cancelled = await shop.cancel((await shop.place_order({"b": 1}, hold_for=600)).id)
    await past_the_window()
    assert shop.statistics().orders == 0
    assert await shop.confirm(confirmed.id) == confirmed  # idempotent, from the store
    assert await shop.cancel(cancelled.id) == cancelled
    with pytest.raises(InvalidTransition):
        await shop.confirm(cancelled.id)
    with pytest.raises(InvalidTransition):
        await shop.change_order(confirmed.id, {"a": 1})
    with pytest.raises(InvalidTransition):
        await shop.extend(confirmed.id, 60)
    returned = await shop.cancel(confirmed.id)  # a late return
    assert returned.status == "cancelled" and returned.allocations == confirmed.allocations
    assert await shop.stock("a") == StockLevel("a", 100, 0, 100)
    assert store.state.orders[confirmed.id] == returned
    assert await shop.cancel(confirmed.id) == returned  # and once only
    assert await shop.stock("a") == StockLevel("a", 100, 0, 100)
    await past_the_window(0)
    assert shop.statistics().orders == 0  # read back, then retired again
    assert await shop.get_order(confirmed.id) == returned


async def test_concurrent_late_returns_of_a_retired_order_move_stock_once(
    shop, store, autojump_clock
):
    sold = await shop.place_order({"a": 3, "b": 1})
    await past_the_window()
    assert shop.statistics().orders == 0
    answers: list[Order] = []

    async def late_return() -> None:
        answers.append(await shop.cancel(sold.id))

    async def late_webhook() -> None:  # a late confirm racing them: as it is, or refused
        with contextlib.suppress(InvalidTransition):
            assert await shop.confirm(sold.id) == sold

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(late_return)
        nursery.start_soon(late_webhook)
    assert len(answers) == 10 and all(a == answers[0] for a in answers)
    assert answers[0].status == "cancelled"
    assert await shop.stock("a") == StockLevel("a", 100, 0, 100)
    assert await shop.stock("b") == StockLevel("b", 100, 0, 100)
    assert [m.kind for m in await shop.movements("a")] == ["set", "placed", "cancelled"]


async def test_a_placing_key_is_answered_until_its_window_ends(shop, autojump_clock):
    first = await shop.place_order({"a": 1}, idempotency_key="k")
    await trio.sleep(TTL - 1)
    assert await shop.place_order({"a": 1}, idempotency_key="k") == first
    with pytest.raises(IdempotencyConflict):
        await shop.place_order({"a": 2}, idempotency_key="k")
    assert shop.statistics().orders == 1 and (await shop.stock("a")).on_hand == 99
    await past_the_window(1)
    assert shop.statistics().orders == 0
    second = await shop.place_order({"a": 2}, idempotency_key="k")  # a new window
    assert second.id != first.id


async def test_an_order_stays_while_a_later_key_names_it(shop, store, autojump_clock):
    order = await shop.place_order({"a": 1}, hold_for=600)
    await trio.sleep(50)
    await shop.change_order(order.id, {"a": 2}, idempotency_key="edit")
    confirmed = await shop.confirm(order.id)
    await trio.sleep(50)  # past the order's own window, inside the edit key's
    assert shop.statistics().orders == 1
    assert await shop.change_order(order.id, {"a": 2}, idempotency_key="edit") == confirmed
    with pytest.raises(IdempotencyConflict):
        await shop.change_order(order.id, {"a": 3}, idempotency_key="edit")
    assert (await shop.stock("a")).on_hand == 98
    await past_the_window(10)
    assert shop.statistics().orders == 0
    assert await shop.get_order(order.id) == confirmed


async def test_an_order_is_not_retired_before_its_last_move_commits(autojump_clock):
    """In fast durability the answer comes before the commit: an order must not leave memory
    (and be read back from a store that does not have it yet) until its move is committed."""
    from tests.fakes import StalledStore

    store = StalledStore()
    async with stockade.open_engine(
        store=store, durability="fast", idempotency_ttl=timedelta(seconds=TTL)
    ) as engine:
        await engine.set_stock("a", 5)
        order = await engine.place_order({"a": 1})
        await past_the_window()
        assert engine.statistics().orders == 1  # its commit is stuck
        assert await engine.get_order(order.id) == order
        store.resume()
        await past_the_window(0)
        assert engine.statistics().orders == 0
        assert await engine.get_order(order.id) == order


@pytest.mark.parametrize(("move", "status"), [("confirm", "confirmed"), ("cancel", "cancelled")])
async def test_an_order_retires_though_its_caller_gave_up_waiting(move, status, autojump_clock):
    """A confirm or cancel whose caller is cancelled while it waits for the commit has still
    finished the order: it must leave memory after its window like any other, or every caller
    that gives up (a client that disconnects while the database is slow) leaks an order."""
    from tests.fakes import StalledStore

    store = StalledStore()
    store.resume()
    async with stockade.open_engine(
        store=store, durability="durable", idempotency_ttl=timedelta(seconds=TTL)
    ) as engine:
        await engine.set_stock("a", 5)
        order = await engine.place_order({"a": 1}, hold_for=600)
        store.pause()
        with trio.move_on_after(1) as waiting:
            await getattr(engine, move)(order.id)
        assert waiting.cancelled_caught  # the caller gave up while the commit was stuck
        store.resume()
        await past_the_window()
        assert engine.statistics().orders == 0
        assert (await engine.get_order(order.id)).status == status


async def test_memory_is_flat_under_a_steady_load(shop, autojump_clock):
    """Orders keep coming and finishing; the orders in memory stay bounded by the window."""
    in_memory = []
    for minute in range(10):
        for _ in range(30):
            order = await shop.place_order({"a": 1}, hold_for=30)
            if minute % 2:
                await shop.confirm(order.id)
            await shop.adjust_stock("a", 1)
            await trio.sleep(2)
        in_memory.append(shop.statistics().orders)
    assert max(in_memory[2:]) <= 31 + 2  # one window's orders, and a pass's lag
    assert shop.statistics().retired >= 200


# -- list_orders ------------------------------------------------------------------------------


async def test_list_orders_pages_newest_first_with_filters(shop, autojump_clock):
    placed: list[Order] = []
    for _ in range(4):
        # a burst placed at one instant shares created_at: paging must split ties by id
        async with trio.open_nursery() as nursery:
            for i in range(7):

                async def buy(i: int = i) -> None:
                    placed.append(await shop.place_order({"a": 1}, hold_for=600 if i % 2 else None))

                nursery.start_soon(buy)
        await trio.sleep(10)
    cancelled = [await shop.cancel(o.id) for o in placed[:3]]
    orders = {o.id: o for o in placed} | {o.id: o for o in cancelled}
    everything = newest_first(list(orders.values()))
    assert len({o.created_at for o in everything}) == 4
    for limit in (1, 3, 7, 100):
        assert await all_orders(shop, limit) == everything
    for status in ("reserved", "confirmed", "cancelled", "expired"):
        assert await all_orders(shop, 4, status=status) == [
            o for o in everything if o.status == status
        ]
    instants = sorted({o.created_at for o in everything})
    assert await all_orders(shop, 5, created_after=instants[1]) == [
        o for o in everything if o.created_at > instants[1]
    ]
    assert await all_orders(shop, 5, created_before=instants[1]) == [
        o for o in everything if o.created_at < instants[1]
    ]
    between = await all_orders(
        shop, 2, created_after=instants[0], created_before=instants[3], status="confirmed"
    )
    assert between == [
        o for o in everything
        if instants[0] < o.created_at < instants[3] and o.status == "confirmed"
    ]  # fmt: skip
    await past_the_window()  # retired orders are listed the same
    assert await all_orders(shop, 6) == [await shop.get_order(o.id) for o in everything]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"after": "no-such-order"}, InvalidRequest),
        ({"after": ""}, InvalidRequest),
        ({"after": 5}, InvalidRequest),
        ({"status": "open"}, InvalidRequest),
        ({"limit": 0}, InvalidRequest),
        ({"limit": 1001}, InvalidRequest),
        ({"limit": "5"}, InvalidRequest),
        ({"created_after": datetime(2020, 1, 1)}, InvalidRequest),  # naive
        ({"created_before": "2020-01-01"}, InvalidRequest),
    ],
)
async def test_bad_list_orders_requests_are_refused(shop, kwargs, error, autojump_clock):
    await shop.place_order({"a": 1})
    with pytest.raises(error):
        await shop.list_orders(**kwargs)


async def test_list_orders_without_a_history_lists_what_is_in_memory(autojump_clock):
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 10)
        placed = [await engine.place_order({"a": 1}) for _ in range(3)]
        assert await all_orders(engine, 2) == newest_first(placed)
        aware = datetime(2000, 1, 1, tzinfo=UTC)
        assert await engine.list_orders(created_before=aware) == []
        with pytest.raises(InvalidRequest):
            await engine.list_orders(after="no-such-order")


# -- movements --------------------------------------------------------------------------------


async def test_movements_page_by_seq_without_losing_a_row(shop, store, autojump_clock):
    await shop.set_location("north", priority=1)
    await shop.set_stock("a", 3, location="north")
    await shop.transfer("a", 2, "default", "north", reason="rebalance")  # two rows, one seq
    split = await shop.place_order({"a": 99}, hold_for=60)  # default 98, north 1
    assert split.allocations == {"a": {"default": 98, "north": 1}}
    await shop.confirm(split.id)
    await shop.adjust_stock("a", 5, reason="restock", location="north")
    await shop.set_stock("b", 1)
    whole = await shop.movements("a", limit=1000)
    assert [(m.kind, m.location, m.d_on_hand, m.d_reserved) for m in whole] == [
        ("set", "default", 100, 0),
        ("set", "north", 3, 0),
        ("transferred", "default", -2, 0),
        ("transferred", "north", 2, 0),
        ("placed", "default", 0, 98),
        ("placed", "north", 0, 1),
        ("confirmed", "default", -98, -98),
        ("confirmed", "north", -1, -1),
        ("adjusted", "north", 5, 0),
    ]
    assert whole == [m for m in store.state.movements or [] if m.sku == "a"]
    assert [m.reason for m in whole if m.kind != "placed" and m.kind != "confirmed"] == [
        None, None, "rebalance", "rebalance", "restock",
    ]  # fmt: skip
    assert whole[4].order_id == split.id
    for limit in (1, 2, 3, 4):
        assert await all_movements(shop, "a", limit) == whole, limit
    assert await shop.movements("a", after=whole[-1].seq) == []
    assert [m.kind for m in await shop.movements("b")] == ["set", "set"]


async def test_bad_movements_requests_are_refused(shop, autojump_clock):
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"sku": "nope"}, UnknownProduct),
        ({"sku": "bad sku"}, InvalidRequest),
        ({"sku": "a", "after": -1}, InvalidRequest),
        ({"sku": "a", "after": "3"}, InvalidRequest),
        ({"sku": "a", "limit": 0}, InvalidRequest),
        ({"sku": "a", "limit": 1001}, InvalidRequest),
    ]
    for kwargs, error in cases:
        with pytest.raises(error):
            await shop.movements(**kwargs)


async def test_movements_without_a_history_are_empty(autojump_clock):
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 1)
        assert await engine.movements("a") == []
