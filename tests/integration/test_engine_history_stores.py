"""design.md §7, §8 and §11 against every store: what the engine commits (stock per location,
locations, channels, allocations, extended deadlines, key uses) is what a restart finds, and
list_orders and movements page through it the same way everywhere."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio

import stockade
from stockade import Engine, IdempotencyConflict, InvalidRequest, Order, StockLevel
from tests.books import assert_location_books_balance
from tests.integration.stores import StoreKind, memory_kind, postgres_kind, sqlite_kind
from tests.paging import all_movements, all_orders, newest_first

KINDS = ["memory", "sqlite", "postgresql"]
T0 = 1_000_000_000.0


@pytest.fixture(params=KINDS)
def kind(request, tmp_path) -> StoreKind:
    if request.param == "postgresql":
        return postgres_kind(request.getfixturevalue("postgres_dsn"))
    return {"memory": memory_kind, "sqlite": lambda: sqlite_kind(tmp_path)}[request.param]()


def opened(kind: StoreKind, at: float, **options: Any) -> Any:
    """An engine over ``kind``'s store whose wall clock reads ``at`` when it starts."""
    return stockade.open_engine(store=kind.make(), wall_clock=lambda: at, **options)


async def everything(engine: Engine, orders: list[Order]) -> Any:
    """The engine's whole visible state, for comparing across a restart."""
    return (
        engine.locations(),
        engine.channels(),
        {sku: await engine.stock_by_location(sku) for sku in "ab"},
        {sku: await engine.stock(sku) for sku in "ab"},
        {sku: await engine.stock(sku, channel="eu") for sku in "ab"},
        [await engine.get_order(o.id) for o in orders],
    )


async def test_locations_carts_and_keys_survive_a_restart(kind):
    async with opened(kind, T0) as engine:
        await engine.set_location("north", name="North", priority=1)
        await engine.set_location("south", priority=2)
        await engine.set_location("closed", name="Closed", priority=-3, active=False)
        await engine.set_channel("eu", ["north", "south"])
        await engine.set_channel("outlet", ["closed", "default"])
        await engine.set_stock("a", 2)
        await engine.set_stock("a", 3, location="north")
        await engine.set_stock("a", 10, location="south")
        await engine.set_stock("a", 4, location="closed")
        await engine.set_stock("b", 5, location="south")
        await engine.transfer("a", 1, "south", "closed", reason="to the outlet")
        held = await engine.place_order({"a": 6, "b": 1}, hold_for=60, idempotency_key="p1")
        assert held.allocations == {"a": {"default": 2, "north": 3, "south": 1}, "b": {"south": 1}}
        edited = await engine.change_order(held.id, {"a": 7, "b": 2}, idempotency_key="e1")
        in_channel = await engine.place_order({"a": 2}, hold_for=60, channel="eu")
        extended = await engine.extend(in_channel.id, 300, idempotency_key="x1")
        pinned = await engine.place_order({"b": 1}, hold_for=60, location="south")
        sold = await engine.place_order({"a": 1, "b": 1})
        returned = await engine.cancel((await engine.place_order({"a": 1})).id)
        orders = [edited, extended, pinned, sold, returned]
        before = await everything(engine, orders)
    assert before[5] == [edited, extended, pinned, sold, returned]
    state = kind.read()
    assert {o.id: o for o in orders} == {o.id: state.orders[o.id] for o in orders}
    assert set(state.locations) == {"north", "south", "closed"}
    assert state.keys["p1"].kind == "place" and state.keys["p1"].fingerprint == {"a": 6, "b": 1}
    assert state.keys["e1"].kind == "change" and state.keys["e1"].order_id == held.id
    assert state.keys["x1"].kind == "extend" and state.keys["x1"].fingerprint == 300.0
    net = {("a", "default"): 2, ("a", "north"): 3, ("a", "south"): 9, ("a", "closed"): 5,
           ("b", "south"): 5}  # fmt: skip
    assert_location_books_balance(before[2], orders, net, state.movements, before[3], state.stock)

    async with opened(kind, T0 + 30) as engine:
        assert await everything(engine, orders) == before
        # each key is answered as before, and takes nothing
        assert (
            await engine.place_order({"a": 6, "b": 1}, hold_for=60, idempotency_key="p1") == edited
        )
        assert await engine.change_order(held.id, {"a": 7, "b": 2}, idempotency_key="e1") == edited
        assert await engine.extend(in_channel.id, 300, idempotency_key="x1") == extended
        for call in (
            engine.place_order({"a": 1}, idempotency_key="p1"),
            engine.change_order(held.id, {"a": 1}, idempotency_key="e1"),
            engine.extend(in_channel.id, 30, idempotency_key="x1"),
        ):
            with pytest.raises(IdempotencyConflict):
                await call
        assert await everything(engine, orders) == before
        # and the holds work where they were allocated
        await engine.confirm(held.id)
        await engine.cancel(in_channel.id)
        assert await engine.stock_by_location("a") == [
            stockade.LocationLevel("a", "closed", 5, 0, 0, False),
            stockade.LocationLevel("a", "default", 0, 0, 0, True),
            stockade.LocationLevel("a", "north", 0, 0, 0, True),
            stockade.LocationLevel("a", "south", 6, 0, 6, True),
        ]


async def test_extended_deadlines_survive_a_restart(kind):
    async with opened(kind, T0) as engine:
        await engine.set_stock("a", 5)
        order = await engine.place_order({"a": 2}, hold_for=60)
        extended = await engine.extend(order.id, timedelta(minutes=5))
        assert extended.expires_at is not None
        deadline = extended.expires_at.timestamp()
        assert T0 + 300 <= deadline < T0 + 301
    # past the first deadline, before the extended one
    async with opened(kind, T0 + 200) as engine:
        assert await engine.get_order(order.id) == extended
        assert await engine.stock("a") == StockLevel("a", 5, 2, 3)
    # past the extended one: it lapsed while nothing ran, and is released at start
    async with opened(kind, deadline + 1) as engine:
        assert (await engine.get_order(order.id)).status == "expired"
        assert await engine.stock("a") == StockLevel("a", 5, 0, 5)


async def test_a_hold_extended_to_its_cap_stays_capped_after_a_restart(kind):
    options = {"max_hold_lifetime": timedelta(minutes=10)}
    async with opened(kind, T0, **options) as engine:
        await engine.set_stock("a", 5)
        order = await engine.place_order({"a": 1}, hold_for=60)
        capped = await engine.extend(order.id, timedelta(hours=1))
        assert capped.expires_at is not None
        assert capped.expires_at == order.created_at + timedelta(minutes=10)
    async with opened(kind, T0 + 300, **options) as engine:
        with pytest.raises(stockade.InvalidTransition, match="maximum lifetime"):
            await engine.extend(order.id, 60)
        assert await engine.get_order(order.id) == capped


async def test_list_orders_and_movements_page_the_same_on_every_store(kind):
    async with opened(kind, T0) as engine:
        await engine.set_location("north", priority=1)
        await engine.set_stock("a", 100)
        await engine.set_stock("a", 5, location="north")
        await engine.transfer("a", 3, "default", "north")
        split = await engine.place_order({"a": 99})
        assert split.allocations == {"a": {"default": 97, "north": 2}}
        placed: list[Order] = [await engine.cancel(split.id)]
        for burst in range(3):

            async def buy(i: int, burst: int = burst) -> None:
                hold = 60 if i % 2 else None
                placed.append(await engine.place_order({"a": 1 + burst}, hold_for=hold))

            async with trio.open_nursery() as nursery:  # a burst may share created_at
                for i in range(5):
                    nursery.start_soon(buy, i)
        cancelled = [await engine.cancel(o.id) for o in placed[1:5]]
        orders = newest_first(
            list(({o.id: o for o in placed} | {o.id: o for o in cancelled}).values())
        )
        for limit in (1, 4, 100):
            assert await all_orders(engine, limit) == orders
        for status in ("reserved", "confirmed", "cancelled"):
            assert await all_orders(engine, 3, status=status) == [
                o for o in orders if o.status == status
            ]
        middle = orders[len(orders) // 2].created_at
        assert await all_orders(engine, 2, created_after=middle) == [
            o for o in orders if o.created_at > middle
        ]
        assert await all_orders(engine, 2, created_before=middle) == [
            o for o in orders if o.created_at < middle
        ]
        with pytest.raises(InvalidRequest):
            await engine.list_orders(after="no-such-order")

        whole = await engine.movements("a", limit=1000)
        assert len(whole) > len({m.seq for m in whole})  # some changes span two locations
        assert whole == [m for m in kind.read().movements or [] if m.sku == "a"]
        for limit in (1, 2, 3, 7):
            assert await all_movements(engine, "a", limit) == whole, limit
        assert sum(m.d_on_hand for m in whole) == (await engine.stock("a")).on_hand
