"""Late payments and partial returns through the engine (design.md §13): ``confirm(late=True)``
and ``return_units``, on the mock clock, with the books checked after every step."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
    OrderNotFound,
    OutOfStock,
    ReturnConflict,
    StockLevel,
)
from stockade.persistence.audit import check_state
from stockade.persistence.books import Tally
from tests.books import assert_location_books_balance, assert_orders_match_movements


@pytest.fixture
async def shop(store: MemoryStore) -> AsyncIterator[Engine]:
    async with stockade.open_engine(store=store, durability="durable") as engine:
        yield engine


async def levels(engine: Engine, sku: str) -> dict[str, tuple[int, int]]:
    return {x.location: (x.on_hand, x.reserved) for x in await engine.stock_by_location(sku)}


async def books(engine: Engine, store: MemoryStore) -> None:
    """The engine, the store and the books check all agree, whatever happened."""
    await engine._journal.flush()
    state = store.state
    orders = list(state.orders.values())
    skus = {sku for sku, _ in state.stock}
    assert_location_books_balance(
        {sku: await engine.stock_by_location(sku) for sku in skus},
        orders,
        movements=state.movements,
        stored=state.stock,
    )
    assert state.movements is not None
    assert_orders_match_movements(orders, state.movements)
    tally = Tally()
    report = check_state(state, tally)
    assert report.balanced, report.findings


async def everything(engine: Engine, store: MemoryStore) -> Any:
    await engine._journal.flush()
    state = store.state
    return (dict(state.stock), dict(state.orders), len(state.movements or []), state.last_seq)


# -- late payments ----------------------------------------------------------------------------


async def test_a_late_payment_confirms_an_expired_hold_when_its_units_are_there(
    shop, store, autojump_clock
):
    await shop.set_stock("a", 5)
    await shop.set_stock("b", 3)
    order = await shop.place_order({"a": 2, "b": 1}, hold_for=30)
    await trio.sleep(31)
    assert (await shop.get_order(order.id)).status == "expired"
    with pytest.raises(InvalidTransition):
        await shop.confirm(order.id)  # not late: refused as ever
    confirmed = await shop.confirm(order.id, late=True)
    assert confirmed.status == "confirmed"
    assert confirmed.allocations == {"a": {"default": 2}, "b": {"default": 1}}
    assert confirmed.expires_at == order.expires_at
    assert await shop.stock("a") == StockLevel("a", 3, 0, 3)
    assert await shop.stock("b") == StockLevel("b", 2, 0, 2)
    # repeated: idempotent, nothing moves
    before = await everything(shop, store)
    assert await shop.confirm(order.id, late=True) == confirmed
    assert await shop.confirm(order.id) == confirmed
    assert await everything(shop, store) == before
    assert store.state.orders[order.id] == confirmed
    stats = shop.statistics()
    assert (stats.confirmed, stats.confirmed_late, stats.expired) == (1, 1, 1)
    await books(shop, store)


async def test_a_late_confirm_of_a_lapsed_hold_before_its_timer(shop, store, autojump_clock):
    await shop.set_stock("a", 1)
    order = await shop.place_order({"a": 1}, hold_for=10)
    shop._expiry.stop()  # the timer never runs: the confirm itself finds the lapse
    await trio.sleep(11)
    confirmed = await shop.confirm(order.id, late=True)
    assert confirmed.status == "confirmed"
    assert await shop.stock("a") == StockLevel("a", 0, 0, 0)
    await books(shop, store)


async def test_a_late_payment_is_all_or_nothing(shop, store, autojump_clock):
    await shop.set_stock("a", 5)
    await shop.set_stock("b", 3)
    order = await shop.place_order({"a": 2, "b": 3}, hold_for=30)
    await trio.sleep(31)
    await shop.place_order({"b": 2})  # someone bought b meanwhile
    before = await everything(shop, store)
    with pytest.raises(OutOfStock) as refused:
        await shop.confirm(order.id, late=True)
    assert refused.value.shortages == {"b": (3, 1)}
    assert await everything(shop, store) == before
    assert await shop.stock("a") == StockLevel("a", 5, 0, 5)  # a was given back
    assert (await shop.get_order(order.id)).status == "expired"
    await shop.adjust_stock("b", 2)
    assert (await shop.confirm(order.id, late=True)).status == "confirmed"
    assert await shop.stock("b") == StockLevel("b", 0, 0, 0)
    await books(shop, store)


async def test_a_late_payment_takes_by_the_allocation_rule_within_the_orders_pin(
    shop, store, autojump_clock
):
    await shop.set_location("berlin", priority=1)
    await shop.set_location("paris", priority=2)
    await shop.set_stock("a", 2, location="berlin")
    await shop.set_stock("a", 2, location="paris")
    await shop.set_channel("fr", ["paris"])
    spread = await shop.place_order({"a": 3}, hold_for=30)
    assert spread.allocations == {"a": {"berlin": 2, "paris": 1}}
    pinned = await shop.place_order({"a": 1}, hold_for=30, channel="fr")
    await trio.sleep(31)
    await shop.place_order({"a": 1}, location="berlin")  # berlin has one left
    late = await shop.confirm(spread.id, late=True)
    assert late.allocations == {"a": {"berlin": 1, "paris": 2}}  # taken again, by priority
    assert await levels(shop, "a") == {"berlin": (0, 0), "paris": (0, 0)}
    with pytest.raises(OutOfStock):  # the channel's paris is empty; berlin is not its own
        await shop.confirm(pinned.id, late=True)
    await shop.adjust_stock("a", 1, location="berlin")
    with pytest.raises(OutOfStock):
        await shop.confirm(pinned.id, late=True)
    await shop.adjust_stock("a", 1, location="paris")
    assert (await shop.confirm(pinned.id, late=True)).allocations == {"a": {"paris": 1}}
    await books(shop, store)


async def test_late_confirm_of_reserved_confirmed_and_cancelled_orders(shop, store, autojump_clock):
    await shop.set_stock("a", 5)
    held = await shop.place_order({"a": 1}, hold_for=30)
    confirmed = await shop.confirm(held.id, late=True)  # a normal confirm
    assert confirmed.status == "confirmed" and shop.statistics().confirmed_late == 0
    dropped = await shop.place_order({"a": 1}, hold_for=30)
    await shop.cancel(dropped.id)
    with pytest.raises(InvalidTransition):
        await shop.confirm(dropped.id, late=True)
    with pytest.raises(OrderNotFound):
        await shop.confirm("no-such-order", late=True)
    with pytest.raises(InvalidRequest):
        await shop.confirm(held.id, late=1)
    await books(shop, store)


async def test_concurrent_late_payments_of_one_order_take_its_units_once(
    shop, store, autojump_clock
):
    await shop.set_stock("a", 10)
    order = await shop.place_order({"a": 4}, hold_for=30)
    await trio.sleep(31)
    answers = []

    async def pay() -> None:
        answers.append(await shop.confirm(order.id, late=True))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(pay)
    assert len({a.status for a in answers}) == 1 and len(answers) == 5
    assert await shop.stock("a") == StockLevel("a", 6, 0, 6)
    await books(shop, store)


# -- partial returns --------------------------------------------------------------------------


async def test_partial_returns_restock_until_the_order_is_cancelled(shop, store, autojump_clock):
    await shop.set_stock("a", 5)
    await shop.set_stock("b", 5)
    order = await shop.place_order({"a": 3, "b": 1})
    one = await shop.return_units(order.id, {"a": 1})
    assert (one.status, one.returned, one.written_off) == ("confirmed", {"a": 1}, {})
    assert await shop.stock("a") == StockLevel("a", 3, 0, 3)
    two = await shop.return_units(order.id, [("a", 2), ("b", 1)])
    assert (two.status, two.returned) == ("cancelled", {"a": 3, "b": 1})
    assert await shop.stock("a") == StockLevel("a", 5, 0, 5)
    assert await shop.stock("b") == StockLevel("b", 5, 0, 5)
    assert store.state.orders[order.id] == two
    with pytest.raises(InvalidTransition):  # nothing left to return
        await shop.return_units(order.id, {"a": 1})
    assert (await shop.cancel(order.id)) == two  # idempotent
    assert shop.statistics().returned == 2
    kinds = [m.kind for m in store.state.movements or [] if m.order_id == order.id]
    assert kinds == ["placed", "placed", "returned", "returned", "returned"]
    await books(shop, store)


async def test_a_write_off_does_not_come_back_on_hand(shop, store, autojump_clock):
    await shop.set_stock("a", 5)
    order = await shop.place_order({"a": 3})
    lost = await shop.return_units(order.id, {"a": 2}, restock=False)
    assert (lost.status, lost.returned, lost.written_off) == ("confirmed", {"a": 2}, {"a": 2})
    assert await shop.stock("a") == StockLevel("a", 2, 0, 2)
    done = await shop.return_units(order.id, {"a": 1})
    assert (done.status, done.returned, done.written_off) == ("cancelled", {"a": 3}, {"a": 2})
    assert await shop.stock("a") == StockLevel("a", 3, 0, 3)
    rows = [(m.kind, m.d_on_hand) for m in store.state.movements or [] if m.order_id == order.id]
    assert rows == [("placed", -3), ("written_off", 0), ("returned", 1)]
    await books(shop, store)


async def test_returns_go_back_where_the_units_came_from(shop, store, autojump_clock):
    await shop.set_location("berlin", priority=1)
    await shop.set_location("paris", priority=2)
    await shop.set_location("rome", priority=3)
    for where in ("berlin", "paris", "rome"):
        await shop.set_stock("a", 2, location=where)
    order = await shop.place_order({"a": 6})
    assert order.allocations == {"a": {"berlin": 2, "paris": 2, "rome": 2}}
    await shop.return_units(order.id, {"a": 3})  # restocked: the first units taken
    assert await levels(shop, "a") == {"berlin": (2, 0), "paris": (1, 0), "rome": (0, 0)}
    await shop.return_units(order.id, {"a": 1}, restock=False)  # written off: the last
    await books(shop, store)
    cancelled = await shop.cancel(order.id)  # the rest: one at paris, one at rome
    assert (cancelled.returned, cancelled.written_off) == ({"a": 6}, {"a": 1})
    assert await levels(shop, "a") == {"berlin": (2, 0), "paris": (2, 0), "rome": (1, 0)}
    await books(shop, store)


async def test_a_whole_cancel_after_a_partial_return_returns_only_what_is_left(
    shop, store, autojump_clock
):
    await shop.set_stock("a", 5)
    order = await shop.place_order({"a": 2}, hold_for=30)
    await shop.confirm(order.id)
    await shop.return_units(order.id, {"a": 1})
    cancelled = await shop.cancel(order.id)
    assert (cancelled.status, cancelled.returned) == ("cancelled", {"a": 2})
    assert await shop.stock("a") == StockLevel("a", 5, 0, 5)
    await books(shop, store)


BAD_RETURNS: list[tuple[Any, type[Exception]]] = [
    ({"a": 3}, ReturnConflict),  # more than bought
    ({"b": 1}, ReturnConflict),  # a line the order does not have
    ({"a": 0}, InvalidRequest),
    ({}, InvalidRequest),
    ([("a", 1), ("a", 1)], InvalidRequest),
    ({"bad sku": 1}, InvalidRequest),
]


@pytest.mark.parametrize(("lines", "error"), BAD_RETURNS)
async def test_bad_returns_are_refused_and_change_nothing(shop, store, lines, error):
    await shop.set_stock("a", 5)
    await shop.set_stock("b", 5)
    order = await shop.place_order({"a": 2})
    await shop.return_units(order.id, {"a": 1})
    if lines == {"a": 3}:
        lines = {"a": 2}  # one of the two is back already: two more is too many
    before = await everything(shop, store)
    with pytest.raises(error):
        await shop.return_units(order.id, lines)
    assert await everything(shop, store) == before


async def test_only_a_confirmed_order_has_units_to_return(shop, store, autojump_clock):
    await shop.set_stock("a", 5)
    held = await shop.place_order({"a": 1}, hold_for=30)
    with pytest.raises(InvalidTransition):
        await shop.return_units(held.id, {"a": 1})
    await trio.sleep(31)
    with pytest.raises(InvalidTransition):  # expired
        await shop.return_units(held.id, {"a": 1})
    with pytest.raises(OrderNotFound):
        await shop.return_units("nope", {"a": 1})
    with pytest.raises(InvalidRequest):
        await shop.return_units(held.id, {"a": 1}, restock="no")
    await books(shop, store)


async def test_a_retried_return_moves_nothing_and_another_with_its_key_conflicts(
    shop, store, autojump_clock
):
    await shop.set_stock("a", 5)
    order = await shop.place_order({"a": 3})
    first = await shop.return_units(order.id, {"a": 1}, idempotency_key="rma-1")
    before = await everything(shop, store)
    assert await shop.return_units(order.id, {"a": 1}, idempotency_key="rma-1") == first
    assert await everything(shop, store) == before
    with pytest.raises(IdempotencyConflict):
        await shop.return_units(order.id, {"a": 2}, idempotency_key="rma-1")
    with pytest.raises(IdempotencyConflict):  # same lines, written off instead
        await shop.return_units(order.id, {"a": 1}, restock=False, idempotency_key="rma-1")
    other = await shop.place_order({"a": 1})
    with pytest.raises(IdempotencyConflict):  # another order
        await shop.return_units(other.id, {"a": 1}, idempotency_key="rma-1")
    with pytest.raises(IdempotencyConflict):  # a key used to place an order
        await shop.place_order({"a": 1}, idempotency_key="rma-1")
    # the retry after the order moved on answers it as it is now
    last = await shop.return_units(order.id, {"a": 2}, idempotency_key="rma-2")
    assert last.status == "cancelled"
    assert await shop.return_units(order.id, {"a": 1}, idempotency_key="rma-1") == last
    assert await shop.stock("a") == StockLevel("a", 4, 0, 4)
    await books(shop, store)


async def test_concurrent_returns_of_one_order_never_return_more_than_it_bought(
    shop, store, autojump_clock
):
    await shop.set_stock("a", 10)
    order = await shop.place_order({"a": 4})
    outcomes: list[str] = []

    async def give_back(restock: bool) -> None:
        try:
            await shop.return_units(order.id, {"a": 1}, restock=restock)
            outcomes.append("ok")
        except (InvalidRequest, InvalidTransition):
            outcomes.append("refused")

    async with trio.open_nursery() as nursery:
        for i in range(7):
            nursery.start_soon(give_back, i % 2 == 0)
        nursery.start_soon(shop.cancel, order.id)
    final = await shop.get_order(order.id)
    assert final.status == "cancelled" and final.returned == {"a": 4}
    assert outcomes.count("ok") <= 4
    assert (await shop.stock("a")).on_hand == 10 - final.written_off.get("a", 0)
    await books(shop, store)


async def test_returns_and_late_payments_in_the_change_feed(shop, store, autojump_clock):
    await shop.set_stock("a", 3)
    held = await shop.place_order({"a": 3}, hold_for=30)
    await trio.sleep(31)
    await shop.confirm(held.id, late=True)
    await shop.return_units(held.id, {"a": 1})
    await shop.return_units(held.id, {"a": 2}, restock=False)
    events, _ = await shop.event_page(0, 100)
    kinds = [e.type for e in events]
    assert kinds[kinds.index("order.expired") :] == [
        "order.expired", "stock.changed", "product.back_in_stock",
        "order.confirmed", "stock.changed", "product.sold_out",  # paid late: taken again
        "order.returned", "stock.changed", "product.back_in_stock",  # one restocked
        "order.returned", "order.cancelled",  # the rest written off: no stock moves
    ]  # fmt: skip
    late, one, rest, cancelled = (e.data for e in events if e.type in ("order.confirmed",
                                  "order.returned", "order.cancelled"))  # fmt: skip
    assert late["status"] == "confirmed" and late["returned"] == {}
    assert (one["status"], one["returned"], one["written_off"]) == ("confirmed", {"a": 1}, {})
    assert (rest["status"], rest["written_off"]) == ("cancelled", {"a": 2})
    assert cancelled == rest
    only, _ = await shop.event_page(0, 100, types=["order.returned"])
    assert [e.data["returned"] for e in only] == [{"a": 1}, {"a": 3}]
