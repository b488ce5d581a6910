"""Allocation through the engine (design.md §7): where an order's units come from, that every
later move of the order moves exactly those units, and what (de)activating a location does."""

from __future__ import annotations

import pytest
import trio

import stockade
from stockade import Engine, MemoryStore, Order, OutOfStock, StockLevel
from tests.books import assert_location_books_balance


async def per_location(engine: Engine, sku: str) -> dict[str, tuple[int, int, int]]:
    """``{location: (on_hand, reserved, available)}``."""
    return {x.location: (x.on_hand, x.reserved, x.available)
            for x in await engine.stock_by_location(sku)}  # fmt: skip


async def three_sites(engine: Engine, default: int, berlin: int, paris: int) -> None:
    """default (priority 0), berlin (1), paris (2), each holding some of product "a"."""
    await engine.set_location("berlin", priority=1)
    await engine.set_location("paris", priority=2)
    await engine.set_stock("a", default)
    await engine.set_stock("a", berlin, location="berlin")
    await engine.set_stock("a", paris, location="paris")


async def test_priority_allocation_splits_a_line_and_every_move_follows_it(engine, store):
    await three_sites(engine, default=2, berlin=3, paris=10)
    order = await engine.place_order({"a": 6}, hold_for=60)
    assert order.allocations == {"a": {"default": 2, "berlin": 3, "paris": 1}}
    assert store.state.orders[order.id].allocations == order.allocations
    assert await per_location(engine, "a") == {
        "default": (2, 2, 0), "berlin": (3, 3, 0), "paris": (10, 1, 9),
    }  # fmt: skip
    assert await engine.stock("a") == StockLevel("a", 15, 6, 9)

    confirmed = await engine.confirm(order.id)
    assert confirmed.allocations == order.allocations
    assert await per_location(engine, "a") == {
        "default": (0, 0, 0), "berlin": (0, 0, 0), "paris": (9, 0, 9),
    }  # fmt: skip
    held = await engine.place_order({"a": 4}, hold_for=60)
    assert held.allocations == {"a": {"paris": 4}}
    await engine.cancel(held.id)  # a release
    assert await per_location(engine, "a") == {
        "default": (0, 0, 0), "berlin": (0, 0, 0), "paris": (9, 0, 9),
    }  # fmt: skip
    await engine.cancel(order.id)  # a return: every unit back where it came from
    assert await per_location(engine, "a") == {
        "default": (2, 0, 2), "berlin": (3, 0, 3), "paris": (10, 0, 10),
    }  # fmt: skip
    assert_location_books_balance(
        {"a": await engine.stock_by_location("a")},
        [await engine.get_order(order.id), await engine.get_order(held.id)],
        {("a", "default"): 2, ("a", "berlin"): 3, ("a", "paris"): 10},
        store.state.movements,
        stored=store.state.stock,
    )


async def test_equal_priorities_are_taken_in_id_order(engine):
    await engine.set_location("b-site", priority=1)
    await engine.set_location("a-site", priority=1)
    for site in ("b-site", "a-site"):
        await engine.set_stock("a", 2, location=site)
    order = await engine.place_order({"a": 3})
    assert order.allocations == {"a": {"a-site": 2, "b-site": 1}}
    assert [x.location for x in await engine.stock_by_location("a")] == ["a-site", "b-site"]


async def test_a_direct_purchase_takes_on_hand_where_it_is_allocated(engine):
    await three_sites(engine, default=1, berlin=1, paris=5)
    order = await engine.place_order({"a": 4})
    assert order.status == "confirmed"
    assert order.allocations == {"a": {"default": 1, "berlin": 1, "paris": 2}}
    assert await per_location(engine, "a") == {
        "default": (0, 0, 0), "berlin": (0, 0, 0), "paris": (3, 0, 3),
    }  # fmt: skip
    await engine.cancel(order.id)
    assert await per_location(engine, "a") == {
        "default": (1, 0, 1), "berlin": (1, 0, 1), "paris": (5, 0, 5),
    }  # fmt: skip


async def test_each_line_of_an_order_is_allocated_on_its_own(engine):
    await three_sites(engine, default=0, berlin=2, paris=2)
    await engine.set_stock("b", 5)
    order = await engine.place_order({"b": 2, "a": 3}, hold_for=60)
    assert order.allocations == {"a": {"berlin": 2, "paris": 1}, "b": {"default": 2}}


async def test_most_available_takes_from_the_fullest_location_first():
    store = MemoryStore(keep_movements=True)
    async with stockade.open_engine(
        store=store, durability="durable", allocation="most_available"
    ) as engine:
        await three_sites(engine, default=2, berlin=5, paris=4)
        first = await engine.place_order({"a": 3}, hold_for=60)
        assert first.allocations == {"a": {"berlin": 3}}
        second = await engine.place_order({"a": 4}, hold_for=60)
        assert second.allocations == {"a": {"paris": 4}}
        # default and berlin tie at 2: (priority, id) order breaks it
        third = await engine.place_order({"a": 3})
        assert third.allocations == {"a": {"default": 2, "berlin": 1}}
        await engine.cancel(first.id)
        await engine.confirm(second.id)
        assert await per_location(engine, "a") == {
            "default": (0, 0, 0), "berlin": (4, 0, 4), "paris": (0, 0, 0),
        }  # fmt: skip
        orders = [await engine.get_order(o.id) for o in (first, second, third)]
        assert_location_books_balance(
            {"a": await engine.stock_by_location("a")},
            orders,
            {("a", "default"): 2, ("a", "berlin"): 5, ("a", "paris"): 4},
            store.state.movements,
        )


async def test_a_pinned_order_takes_only_from_its_location(engine, store):
    await three_sites(engine, default=10, berlin=10, paris=3)
    order = await engine.place_order({"a": 2}, hold_for=60, location="paris")
    assert order.allocations == {"a": {"paris": 2}} and order.location == "paris"
    before = await per_location(engine, "a")
    with pytest.raises(OutOfStock) as caught:
        await engine.place_order({"a": 2}, location="paris")  # 1 left there, 18 elsewhere
    assert caught.value.shortages == {"a": (2, 1)}
    assert await per_location(engine, "a") == before
    assert store.state.orders[order.id].location == "paris"


async def test_a_channel_sees_and_sells_only_its_locations(engine):
    await three_sites(engine, default=1, berlin=2, paris=50)
    await engine.set_channel("de", ["berlin", "default"])
    await engine.set_channel("fr", ["paris"])
    assert await engine.stock("a", channel="de") == StockLevel("a", 3, 0, 3)
    assert await engine.stock("a", channel="fr") == StockLevel("a", 50, 0, 50)
    order = await engine.place_order({"a": 3}, hold_for=60, channel="de")
    assert order.allocations == {"a": {"default": 1, "berlin": 2}} and order.channel == "de"
    assert await engine.stock("a", channel="de") == StockLevel("a", 3, 3, 0)
    assert await engine.stock("a", channel="fr") == StockLevel("a", 50, 0, 50)
    assert await engine.stock("a") == StockLevel("a", 53, 3, 50)
    with pytest.raises(OutOfStock) as caught:
        await engine.place_order({"a": 1}, channel="de")
    assert caught.value.shortages == {"a": (1, 0)}
    # a channel's order may pin one of the channel's locations
    await engine.cancel(order.id)
    pinned = await engine.place_order({"a": 2}, channel="de", location="berlin")
    assert pinned.allocations == {"a": {"berlin": 2}}


async def test_expiry_releases_exactly_the_allocated_units(engine, autojump_clock):
    await three_sites(engine, default=1, berlin=1, paris=5)
    short = await engine.place_order({"a": 3}, hold_for=10)
    long = await engine.place_order({"a": 2}, hold_for=100)
    assert short.allocations == {"a": {"default": 1, "berlin": 1, "paris": 1}}
    assert long.allocations == {"a": {"paris": 2}}
    await trio.sleep(10)
    assert (await engine.get_order(short.id)).status == "expired"
    assert await per_location(engine, "a") == {
        "default": (1, 0, 1), "berlin": (1, 0, 1), "paris": (5, 2, 3),
    }  # fmt: skip
    await trio.sleep(90)
    assert (await engine.get_order(long.id)).status == "expired"
    assert await per_location(engine, "a") == {
        "default": (1, 0, 1), "berlin": (1, 0, 1), "paris": (5, 0, 5),
    }  # fmt: skip


async def test_deactivating_a_location_hides_its_units_but_keeps_its_holds(engine, store):
    await three_sites(engine, default=0, berlin=4, paris=6)
    await engine.set_channel("de", ["berlin"])
    await engine.set_channel("eu", ["berlin", "paris"])
    kept = await engine.place_order({"a": 3}, hold_for=60)
    dropped = await engine.place_order({"a": 1}, hold_for=60, location="berlin")
    assert kept.allocations == {"a": {"berlin": 3}}
    await engine.set_location("berlin", priority=1, active=False)

    # at once, in every view: berlin's 4 units (all held) and nothing free there
    assert await engine.stock("a") == StockLevel("a", 10, 4, 6)
    assert await engine.stock("a", channel="de") == StockLevel("a", 4, 4, 0)
    assert await engine.stock("a", channel="eu") == StockLevel("a", 10, 4, 6)
    assert await per_location(engine, "a") == {
        "default": (0, 0, 0), "berlin": (4, 4, 0), "paris": (6, 0, 6),
    }  # fmt: skip
    await engine.cancel(dropped.id)  # one unit is free at berlin now, but berlin is closed
    assert await engine.stock("a") == StockLevel("a", 10, 3, 6)
    assert await engine.stock("a", channel="de") == StockLevel("a", 4, 3, 0)
    with pytest.raises(OutOfStock):
        await engine.place_order({"a": 1}, channel="de")
    with pytest.raises(OutOfStock):
        await engine.place_order({"a": 1}, location="berlin")
    elsewhere = await engine.place_order({"a": 1}, hold_for=60)
    assert elsewhere.allocations == {"a": {"paris": 1}}

    # the hold placed there stays valid and confirms there
    await engine.confirm(kept.id)
    assert await per_location(engine, "a") == {
        "default": (0, 0, 0), "berlin": (1, 0, 0), "paris": (6, 1, 5),
    }  # fmt: skip

    await engine.set_location("berlin", priority=1, active=True)
    assert await engine.stock("a") == StockLevel("a", 7, 1, 6)
    assert await engine.stock("a", channel="de") == StockLevel("a", 1, 0, 1)
    back = await engine.place_order({"a": 1}, channel="de")
    assert back.allocations == {"a": {"berlin": 1}}
    orders = [await engine.get_order(o.id) for o in (kept, dropped, elsewhere, back)]
    assert_location_books_balance(
        {"a": await engine.stock_by_location("a")},
        orders,
        {("a", "berlin"): 4, ("a", "paris"): 6},
        store.state.movements,
        {"a": await engine.stock("a")},
        store.state.stock,
    )


async def test_deactivating_default_hides_a_single_location_product(engine):
    await engine.set_stock("a", 5)
    held = await engine.place_order({"a": 2}, hold_for=60)
    await engine.set_location("default", active=False)
    assert await engine.stock("a") == StockLevel("a", 5, 2, 0)
    assert engine.products() == [StockLevel("a", 5, 2, 0)]
    with pytest.raises(OutOfStock):
        await engine.place_order({"a": 1})
    await engine.cancel(held.id)
    assert await engine.stock("a") == StockLevel("a", 5, 0, 0)
    await engine.set_location("default")
    assert await engine.stock("a") == StockLevel("a", 5, 0, 5)


async def test_last_unit_rush_across_locations(engine, store):
    """400 buyers, 100 units over four active locations and 30 more at an inactive one:
    exactly 100 win, and the inactive location's 30 are never touched."""
    spread = {"default": 10, "north": 40, "south": 25, "east": 25}
    for priority, site in enumerate(("north", "south", "east"), start=1):
        await engine.set_location(site, priority=priority)
    await engine.set_location("closed", priority=-1, active=False)  # first in line, if active
    for site, units in spread.items():
        await engine.set_stock("hot", units, location=site)
    await engine.set_stock("hot", 30, location="closed")
    sold: list[Order] = []
    refused = 0

    async def buyer(i: int) -> None:
        nonlocal refused
        try:
            sold.append(await engine.place_order({"hot": 1}, hold_for=60 if i % 2 else None))
        except OutOfStock:
            refused += 1

    async with trio.open_nursery() as nursery:
        for i in range(400):
            nursery.start_soon(buyer, i)
    assert len(sold) == 100 and refused == 300
    levels = await engine.stock_by_location("hot")
    assert {x.location: x.on_hand - x.reserved for x in levels} == {
        "closed": 30, "default": 0, "north": 0, "south": 0, "east": 0,
    }  # fmt: skip
    assert all("closed" not in o.allocations["hot"] for o in sold)
    net = {("hot", site): units for site, units in spread.items()} | {("hot", "closed"): 30}
    assert_location_books_balance(
        {"hot": levels}, sold, net, store.state.movements, {"hot": await engine.stock("hot")},
        store.state.stock,
    )  # fmt: skip
    with pytest.raises(OutOfStock):
        await engine.place_order({"hot": 1})
