"""The sale's rules through the engine (design.md §13), on the mock clock: windows opening and
closing, per_order, per_customer counts over holds, purchases, cart edits, cancels, returns and
expiry, rules replaced, bad input, a restart, and a rush of one customer's parallel orders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
import trio
import trio.testing

import stockade
from stockade import (
    Engine,
    InvalidRequest,
    LimitExceeded,
    MemoryStore,
    NotOnSale,
    OutOfStock,
    ProductRules,
    UnknownProduct,
)
from stockade.engine.orders import from_timestamp
from tests.books import assert_books_balance as assert_levels

T0 = 1_000_000_000.0


def at(offset_s: float) -> datetime:
    return from_timestamp(T0 + offset_s)


def opened(store: MemoryStore):
    return stockade.open_engine(
        store=store, durability="durable", wall_clock=lambda: T0 + trio.current_time()
    )


@pytest.fixture
async def shop(store: MemoryStore) -> AsyncIterator[Engine]:
    """An engine whose clock starts at T0 (each test asks for ``autojump_clock``), with "a" and
    "b" at 100 units."""
    async with opened(store) as engine:
        await engine.set_stock("a", 100)
        await engine.set_stock("b", 100)
        yield engine


async def assert_books_balance(engine: Engine) -> None:
    """Stock against the orders, and every per_customer count against the orders (each
    reserved or confirmed order of a customer counted whole under a rule set before it)."""
    orders = list(engine._book.orders.values())
    assert_levels({sku: await engine.stock(sku) for sku in engine._ledgers}, orders)
    for sku, ledger in engine._ledgers.items():
        if ledger.rules is None or ledger.rules.rules.per_customer is None:
            continue
        since = ledger.rules.rules.counting_since
        assert since is not None
        expected: dict[str, int] = {}
        for order in orders:
            if (order.customer is not None and sku in order.lines
                    and order.status in ("reserved", "confirmed")
                    and order.created_at >= since):  # fmt: skip
                expected[order.customer] = expected.get(order.customer, 0) + order.lines[sku]
        assert counts(engine, sku) == expected, sku


def counts(engine: Engine, sku: str) -> dict[str, int]:
    state = engine._ledgers[sku].rules
    return {} if state is None else dict(state.counts)


async def stored_counts(engine: Engine, store: MemoryStore, sku: str) -> dict[str, int]:
    """The per_customer counts the store holds, once everything journaled has committed."""
    await engine._journal.flush()
    out: dict[str, int] = {}
    for (s, _), (customer, units) in store.state.counts.items():
        if s == sku:
            out[customer] = out.get(customer, 0) + units
    return out


# -- windows ----------------------------------------------------------------------------------


async def test_a_window_opens_and_closes_on_the_engines_clock(shop, autojump_clock):
    await shop.set_rules("a", opens_at=at(60), closes_at=at(120))
    assert not shop.on_sale("a")
    with pytest.raises(NotOnSale) as refused:
        await shop.place_order({"a": 1})
    assert (refused.value.sku, refused.value.opens_at, refused.value.closes_at) == (
        "a", at(60), at(120),
    )  # fmt: skip
    assert (await shop.stock("a")).available == 100
    await trio.sleep(60)  # exactly opens_at: on sale
    assert shop.on_sale("a")
    held = await shop.place_order({"a": 1}, hold_for=600)
    await trio.sleep(59)
    await shop.place_order({"a": 1})
    await trio.sleep(1)  # exactly closes_at: closed
    assert not shop.on_sale("a")
    with pytest.raises(NotOnSale):
        await shop.place_order({"a": 1, "b": 1})
    with pytest.raises(NotOnSale):  # a cart edit that grows the line is a new take
        await shop.change_order(held.id, {"a": 2})
    assert (await shop.stock("b")).available == 100  # b was given back
    await shop.change_order(held.id, {"a": 1, "b": 1})  # b has no rules
    assert (await shop.confirm(held.id)).status == "confirmed"  # paying is not buying more
    await assert_books_balance(shop)


# -- per_order --------------------------------------------------------------------------------


async def test_per_order_limits_one_orders_units_and_its_cart_edits(shop, autojump_clock):
    await shop.set_rules("a", per_order=2)
    with pytest.raises(LimitExceeded) as refused:
        await shop.place_order({"a": 3, "b": 5})
    assert refused.value.limits == {"a": ("per_order", 2, 0, 3)}
    assert (await shop.stock("b")).available == 100
    held = await shop.place_order({"a": 2}, hold_for=600)
    with pytest.raises(LimitExceeded) as refused:
        await shop.change_order(held.id, {"a": 3})
    assert refused.value.limits == {"a": ("per_order", 2, 2, 1)}
    assert (await shop.get_order(held.id)).lines == {"a": 2}
    await shop.place_order({"a": 2})  # another order: its own limit
    assert (await shop.stock("a")).available == 96


# -- per_customer -----------------------------------------------------------------------------


async def test_per_customer_counts_holds_and_purchases_until_released(shop, store, autojump_clock):
    await shop.set_rules("a", per_customer=3)
    held = await shop.place_order({"a": 2}, hold_for=60, customer="ann")
    bought = await shop.place_order({"a": 1}, customer="ann")
    with pytest.raises(LimitExceeded) as refused:
        await shop.place_order({"a": 1}, hold_for=60, customer="ann")
    assert refused.value.limits == {"a": ("per_customer", 3, 3, 1)}
    await shop.place_order({"a": 3}, customer="bob")  # another customer counts apart
    assert counts(shop, "a") == {"ann": 3, "bob": 3}
    await shop.cancel(held.id)  # a released hold no longer counts
    assert counts(shop, "a") == {"ann": 1, "bob": 3}
    second = await shop.place_order({"a": 2}, hold_for=60, customer="ann")
    await trio.sleep(61)  # and an expired one neither
    assert (await shop.get_order(second.id)).status == "expired"
    assert counts(shop, "a") == {"ann": 1, "bob": 3}
    await shop.cancel(bought.id)  # a return gives the units back to the limit
    assert counts(shop, "a") == {"bob": 3}
    await shop.place_order({"a": 3}, customer="ann")
    assert counts(shop, "a") == {"ann": 3, "bob": 3} == await stored_counts(shop, store, "a")
    await assert_books_balance(shop)


async def test_cart_edits_count_the_same_way(shop, autojump_clock):
    await shop.set_rules("a", per_customer=4)
    cart = await shop.place_order({"b": 1}, hold_for=600, customer="ann")
    await shop.change_order(cart.id, {"a": 3, "b": 1})
    other = await shop.place_order({"a": 1}, hold_for=600, customer="ann")
    with pytest.raises(LimitExceeded) as refused:
        await shop.change_order(cart.id, {"a": 4, "b": 1})
    assert refused.value.limits == {"a": ("per_customer", 4, 4, 1)}
    await shop.change_order(cart.id, {"a": 1, "b": 1})  # shrinking frees units
    assert counts(shop, "a") == {"ann": 2}
    await shop.change_order(other.id, {"a": 3})
    await shop.change_order(cart.id, {"b": 1})  # a line dropped frees them all
    assert counts(shop, "a") == {"ann": 3}
    await shop.confirm(other.id)
    assert counts(shop, "a") == {"ann": 3}  # bought still counts


async def test_an_order_with_no_customer_is_refused_for_a_per_customer_product(
    shop, autojump_clock
):
    await shop.set_rules("a", per_customer=2)
    with pytest.raises(LimitExceeded) as refused:  # no one to count it against
        await shop.place_order({"a": 1, "b": 1})
    assert refused.value.limits == {"a": ("customer", 2, 0, 1)}
    assert (await shop.stock("a")).available == 100
    assert (await shop.stock("b")).available == 100
    cart = await shop.place_order({"b": 1}, hold_for=60)
    with pytest.raises(LimitExceeded):
        await shop.change_order(cart.id, {"a": 1, "b": 1})
    await shop.place_order({"b": 1})  # products without the rule do not ask


async def test_a_refused_line_gives_the_others_back_and_their_counts(shop, store, autojump_clock):
    await shop.set_rules("a", per_customer=5)
    await shop.set_rules("b", per_customer=1)
    with pytest.raises(LimitExceeded) as refused:
        await shop.place_order({"a": 2, "b": 2}, hold_for=60, customer="ann")
    assert refused.value.limits == {"b": ("per_customer", 1, 0, 2)}
    assert counts(shop, "a") == {} == counts(shop, "b")
    assert (await shop.stock("a")).available == 100
    await shop.set_stock("a", 3)
    with pytest.raises(OutOfStock):  # short stock: the count taken for b is given back
        await shop.place_order({"b": 1, "a": 4}, customer="zed")
    assert counts(shop, "a") == {} == counts(shop, "b")
    assert await stored_counts(shop, store, "b") == {}
    await shop.place_order({"b": 1, "a": 3}, customer="zed")
    assert counts(shop, "a") == {"zed": 3} == await stored_counts(shop, store, "a")


# -- rules replaced ---------------------------------------------------------------------------


async def test_rules_replaced_keep_counts_unless_per_customer_changes(shop, store, autojump_clock):
    first = await shop.set_rules("a", per_customer=2)
    assert first.counting_since == at(0)
    await shop.place_order({"a": 2}, customer="ann")
    await trio.sleep(10)
    kept = await shop.set_rules("a", per_customer=2, per_order=5, closes_at=at(3600))
    assert kept.counting_since == at(0) and counts(shop, "a") == {"ann": 2}
    with pytest.raises(LimitExceeded):
        await shop.place_order({"a": 1}, customer="ann")
    changed = await shop.set_rules("a", per_customer=3)  # a new limit: counting restarts
    assert changed.counting_since == at(10)
    assert counts(shop, "a") == {} == await stored_counts(shop, store, "a")
    await shop.place_order({"a": 3}, customer="ann")
    assert await shop.rules("a") == changed
    none = await shop.set_rules("a")  # no argument: no rules at all
    assert none == ProductRules(sku="a") and shop._ledgers["a"].rules is None
    assert await shop.rules("a") == ProductRules(sku="a")
    await shop.place_order({"a": 50})
    assert store.state.rules == {}


async def test_bad_rules_are_refused_and_change_nothing(shop, autojump_clock):
    rules = await shop.set_rules("a", per_order=2, low_stock_at=5)
    naive = datetime(2030, 1, 1)
    for kwargs in (
        {"per_order": 0},
        {"per_customer": -1},
        {"per_customer": True},
        {"per_order": 2.5},
        {"low_stock_at": -1},
        {"opens_at": naive},
        {"closes_at": "2030-01-01T00:00:00Z"},
        {"opens_at": at(10), "closes_at": at(10)},
        {"opens_at": at(10), "closes_at": at(5)},
        {"opens_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
        {"closes_at": datetime(1969, 12, 31, tzinfo=UTC)},
        {"closes_at": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2)))},
    ):
        with pytest.raises(InvalidRequest):
            await shop.set_rules("a", **kwargs)
    with pytest.raises(UnknownProduct):
        await shop.set_rules("nope", per_order=1)
    with pytest.raises(InvalidRequest):
        await shop.set_rules("bad sku!", per_order=1)
    assert await shop.rules("a") == rules


async def test_times_in_any_zone_are_kept_in_utc(shop, autojump_clock):
    zone = timezone(timedelta(hours=2))
    rules = await shop.set_rules("a", opens_at=datetime(2030, 1, 1, 2, tzinfo=zone))
    assert rules.opens_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert rules.opens_at.tzinfo == UTC


# -- order fields -----------------------------------------------------------------------------


async def test_orders_keep_customer_reference_and_metadata(shop, store, autojump_clock):
    order = await shop.place_order(
        {"a": 1}, customer="ann", reference="#1001", metadata={"gift": "yes"}
    )
    assert (order.customer, order.reference, order.metadata) == ("ann", "#1001", {"gift": "yes"})
    assert store.state.orders[order.id] == order
    await shop.place_order({"a": 1}, customer="bob")
    await shop.place_order({"b": 1})
    assert [o.id for o in await shop.list_orders(customer="ann")] == [order.id]
    assert len(await shop.list_orders()) == 3
    for kwargs in (
        {"customer": ""},
        {"customer": "x" * 129},
        {"customer": 7},
        {"reference": "x" * 129},
        {"metadata": {"k": 1}},
        {"metadata": {str(i): "v" for i in range(51)}},
        {"metadata": {"k": "v" * 5000}},
        {"metadata": ["k"]},
    ):
        with pytest.raises(InvalidRequest):
            await shop.place_order({"a": 1}, **kwargs)
    with pytest.raises(InvalidRequest):
        await shop.list_orders(customer="")
    assert (await shop.stock("a")).available == 98


# -- restart and rush -------------------------------------------------------------------------


async def test_rules_and_counts_survive_a_restart(store, autojump_clock):
    async with opened(store) as engine:
        await engine.set_stock("a", 10)
        await engine.set_rules("a", per_customer=2, low_stock_at=3, opens_at=at(0))
        await engine.place_order({"a": 1}, hold_for=600, customer="ann")
        await engine.place_order({"a": 1}, customer="ann")
        held = await engine.place_order({"a": 2}, hold_for=30, customer="bob")
        rules = await engine.rules("a")
    await trio.sleep(60)  # bob's hold lapses while the engine is stopped
    async with opened(store) as engine:
        assert await engine.rules("a") == rules
        assert counts(engine, "a") == {"ann": 2}
        assert (await engine.get_order(held.id)).status == "expired"
        with pytest.raises(LimitExceeded):
            await engine.place_order({"a": 1}, customer="ann")
        await engine.place_order({"a": 2}, customer="bob")
        assert await stored_counts(engine, store, "a") == {"ann": 2, "bob": 2}


async def test_a_rush_of_one_customers_orders_never_passes_the_limit(shop, autojump_clock):
    await shop.set_rules("a", per_customer=5)
    outcomes: list[str] = []

    async def buy(hold: bool) -> None:
        try:
            await shop.place_order({"a": 1, "b": 1}, hold_for=60 if hold else None,
                                   customer="ann")  # fmt: skip
            outcomes.append("ok")
        except LimitExceeded:
            outcomes.append("limit")

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(buy, i % 2 == 0)
    assert outcomes.count("ok") == 5 and outcomes.count("limit") == 195
    assert counts(shop, "a") == {"ann": 5}
    assert (await shop.stock("a")).available == 95
    assert (await shop.stock("b")).available == 95
    await assert_books_balance(shop)


# -- low stock --------------------------------------------------------------------------------


async def test_low_stock_is_announced_when_available_falls_to_it(shop, autojump_clock):
    await shop.set_stock("a", 10)
    await shop.set_rules("a", low_stock_at=5)
    await shop.place_order({"a": 4})  # 6: above
    held = await shop.place_order({"a": 1}, hold_for=60)  # 5: crossed
    await shop.place_order({"a": 1})  # 4: already below
    await shop.cancel(held.id)  # 5: rising is not a crossing
    await shop.adjust_stock("a", 10)  # 15
    await shop.place_order({"a": 11, "b": 1})  # 4: crossed again, once
    await shop.set_rules("a")  # no rule: no event
    await shop.adjust_stock("a", 10)
    await shop.place_order({"a": 12})
    events, _ = await shop.event_page(types=["product.low_stock"])
    assert [(e.data["sku"], e.data["stock_level"]["available"], e.data["low_stock_at"])
            for e in events] == [("a", 5, 5), ("a", 4, 5)]  # fmt: skip


# -- late payments and returns ------------------------------------------------------------------


async def test_a_late_payment_counts_again_and_is_held_to_the_limit(shop, store, autojump_clock):
    await shop.set_rules("a", per_customer=3, closes_at=at(100))
    late = await shop.place_order({"a": 2}, hold_for=30, customer="ann")
    await trio.sleep(31)  # the hold lapses: its units no longer count
    assert (await shop.get_order(late.id)).status == "expired"
    assert counts(shop, "a") == {}
    other = await shop.place_order({"a": 2}, hold_for=600, customer="ann")
    with pytest.raises(LimitExceeded) as refused:  # 2 + 2 would pass 3
        await shop.confirm(late.id, late=True)
    assert refused.value.limits == {"a": ("per_customer", 3, 2, 2)}
    await shop.cancel(other.id)
    await trio.sleep(100)  # the window has closed: paying for a hold is no new sale
    paid = await shop.confirm(late.id, late=True)
    assert paid.status == "confirmed"
    assert counts(shop, "a") == {"ann": 2} == await stored_counts(shop, store, "a")
    await assert_books_balance(shop)


async def test_returned_units_leave_the_count_restocked_or_written_off(shop, store, autojump_clock):
    await shop.set_rules("a", per_customer=4)
    order = await shop.place_order({"a": 4}, customer="ann")
    await shop.return_units(order.id, {"a": 1})
    assert counts(shop, "a") == {"ann": 3}
    await shop.return_units(order.id, {"a": 2}, restock=False)  # written off
    assert counts(shop, "a") == {"ann": 1} == await stored_counts(shop, store, "a")
    await shop.place_order({"a": 3}, customer="ann")
    with pytest.raises(LimitExceeded):
        await shop.place_order({"a": 1}, customer="ann")
    await shop.return_units(order.id, {"a": 1})  # the last unit: the order is cancelled
    assert (await shop.get_order(order.id)).status == "cancelled"
    assert counts(shop, "a") == {"ann": 3} == await stored_counts(shop, store, "a")
