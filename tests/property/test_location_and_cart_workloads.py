"""Hundreds of concurrent tasks on the real engine with locations, channels and carts: orders
pinned, by channel and anywhere, transfers, (de)activations, cart edits, extensions, expiries,
late payments and partial returns (restocked or written off, keys retried).
Every batch the journal commits must balance (CheckingStore), the holds must match the orders
whenever the engine is between moves, and at the end the books balance location by location."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import trio

import stockade
from stockade import (
    Engine,
    InvalidRequest,
    InvalidTransition,
    Order,
    OutOfStock,
)
from tests.books import assert_holds_match_orders, assert_location_books_balance
from tests.fakes import CheckingStore

SKUS = [f"sku-{i}" for i in range(6)]
LOCATIONS = ["default", "north", "south", "east", "west"]
CHANNELS = {
    "web": ["north", "south"],
    "shops": ["south", "east", "west"],
    "outlet": ["default", "west"],
}


async def watch_holds(engine: Engine, stop: trio.Event) -> None:
    """Check the holds against the orders every simulated half second, between moves."""
    while not stop.is_set():
        await trio.sleep(0.5)
        if engine.statistics().queued_messages == 0:
            assert_holds_match_orders(engine)


async def final_books(
    engine: Engine, store: CheckingStore, net: dict[tuple[str, str], int], orders: list[Order]
) -> None:
    levels = {sku: await engine.stock_by_location(sku) for sku in SKUS}
    totals = {sku: await engine.stock(sku) for sku in SKUS}
    assert all(t.reserved == 0 for t in totals.values())  # every hold ended one way or another
    assert_location_books_balance(
        levels, orders, net, store.state.movements, totals, store.state.stock
    )
    assert_holds_match_orders(engine)
    assert {o.id: o for o in orders} == {o.id: store.state.orders[o.id] for o in orders}
    assert store.batches_checked > 10


@pytest.mark.parametrize("seed", range(4))
async def test_orders_across_locations_and_channels_balance(seed, autojump_clock):
    rng = random.Random(seed)
    store = CheckingStore()
    net: dict[tuple[str, str], int] = {}
    placed: list[Order] = []
    outcomes = dict.fromkeys(("placed", "refused", "late", "transfers", "transfer_refused",
                              "paid_late", "late_short", "returns"), 0)  # fmt: skip
    async with stockade.open_engine(
        store=store, durability="durable", allocation="most_available" if seed % 2 else "priority"
    ) as engine:
        for priority, location in enumerate(LOCATIONS[1:], start=1):
            await engine.set_location(location, priority=rng.choice([priority, -priority]))
        for channel, locations in CHANNELS.items():
            await engine.set_channel(channel, locations)
        for sku in SKUS:
            for location in rng.sample(LOCATIONS, 4):
                units = rng.randint(0, 30)
                await engine.set_stock(sku, units, location=location)
                net[sku, location] = units

        # One purchase larger than any location's stock, so that split lines are covered
        # whatever order trio runs the rush in (the seeds fix the stock set up above).
        sites = sorted((x.available for x in await engine.stock_by_location(SKUS[0])), reverse=True)
        assert len(sites) > 1 and sites[1] > 0, sites
        placed.append(await engine.place_order({SKUS[0]: sites[0] + 1}))
        outcomes["placed"] += 1

        async def shopper() -> None:
            for _ in range(rng.randint(1, 5)):
                lines = {s: rng.randint(1, 3) for s in rng.sample(SKUS, rng.randint(1, 3))}
                where = rng.choice(["anywhere", "channel", "pinned", "both"])
                channel = rng.choice(list(CHANNELS)) if where in ("channel", "both") else None
                if where == "pinned":
                    location = rng.choice(LOCATIONS)
                elif where == "both":
                    assert channel is not None
                    location = rng.choice(CHANNELS[channel])
                else:
                    location = None
                hold = rng.choice([None, 2.0, 10.0, 40.0])
                try:
                    order = await engine.place_order(
                        lines, hold_for=hold, channel=channel, location=location
                    )
                except OutOfStock:
                    outcomes["refused"] += 1
                    continue
                outcomes["placed"] += 1
                placed.append(order)
                await trio.sleep(rng.random() * 15)
                action = rng.choice(["confirm", "cancel", "abandon", "return", "partial"])
                try:
                    if action in ("confirm", "return", "partial"):
                        await engine.confirm(order.id)
                    if action in ("cancel", "return"):
                        await engine.cancel(order.id)
                    if action == "partial":
                        await give_some_back(order)
                except InvalidTransition:
                    outcomes["late"] += 1
                    if action == "confirm" and rng.random() < 0.7:
                        try:  # the payment came after the hold lapsed
                            await engine.confirm(order.id, late=True)
                            outcomes["paid_late"] += 1
                        except OutOfStock:
                            outcomes["late_short"] += 1

        async def give_some_back(order: Order) -> None:
            """Return some units, restocked or written off, a key retried; then perhaps the
            rest as a whole cancel."""
            for step in range(rng.randint(1, 3)):
                order = await engine.get_order(order.id)
                left = {s: q - order.returned.get(s, 0) for s, q in order.lines.items()}
                left = {s: q for s, q in left.items() if q}
                if not left:
                    return
                sku = rng.choice(sorted(left))
                lines = {sku: rng.randint(1, left[sku])}
                # every third written off, whatever order trio runs the shoppers in
                restock = outcomes["returns"] % 3 != 2
                key = f"rma-{order.id}-{step}"
                back = await engine.return_units(order.id, lines, restock=restock,
                                                 idempotency_key=key)  # fmt: skip
                assert await engine.return_units(
                    order.id, lines, restock=restock, idempotency_key=key
                ) == await engine.get_order(order.id)  # a retry moves nothing
                outcomes["returns"] += 1
                assert back.returned.get(sku, 0) <= order.lines[sku]
                await trio.sleep(rng.random())
            if rng.random() < 0.5:
                await engine.cancel(order.id)

        async def merchant() -> None:
            for _ in range(120):
                await trio.sleep(rng.random() * 0.5)
                sku = rng.choice(SKUS)
                move = rng.random()
                if move < 0.35:
                    source, destination = rng.sample(LOCATIONS, 2)
                    qty = rng.randint(1, 6)
                    try:
                        await engine.transfer(sku, qty, source, destination)
                    except OutOfStock:
                        outcomes["transfer_refused"] += 1
                        continue
                    outcomes["transfers"] += 1
                    net[sku, source] = net.get((sku, source), 0) - qty
                    net[sku, destination] = net.get((sku, destination), 0) + qty
                elif move < 0.7:
                    location = rng.choice(LOCATIONS)
                    delta = rng.choice([-2, -1, 1, 2, 3, 5])
                    try:
                        await engine.adjust_stock(sku, delta, location=location)
                    except InvalidRequest:
                        continue  # below what is reserved there: refused, nothing changed
                    net[sku, location] = net.get((sku, location), 0) + delta
                else:
                    location = rng.choice(LOCATIONS)
                    await engine.set_location(location, priority=rng.randint(-5, 5),
                                              active=rng.random() < 0.6)  # fmt: skip

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_holds, engine, stop)
            async with trio.open_nursery() as shoppers:
                shoppers.start_soon(merchant)
                for _ in range(150):
                    shoppers.start_soon(shopper)
            stop.set()
        await trio.sleep(60)  # every hold left lapses
        orders = [await engine.get_order(o.id) for o in placed]
        await final_books(engine, store, net, orders)
    assert outcomes["placed"] > 100 and outcomes["refused"] > 0, outcomes
    assert outcomes["transfers"] > 10 and outcomes["transfer_refused"] > 0, outcomes
    # Late payments are attempted; whether one finds its units again depends on how trio
    # happened to order the rush (a seed fails ~1 run in 10 to have one succeed), so success
    # and refusal are pinned deterministically in tests/unit/test_engine_returns.py.
    assert outcomes["paid_late"] + outcomes["late_short"] > 0 and outcomes["returns"] > 10, outcomes
    assert any(o.written_off for o in orders) and any(o.returned for o in orders)
    assert {o.status for o in orders} == {"confirmed", "cancelled", "expired"}
    assert any(len(a) > 1 for o in orders for a in o.allocations.values())  # split lines


@pytest.mark.parametrize("seed", range(4))
async def test_carts_that_grow_shrink_extend_and_lapse_balance(seed, autojump_clock):
    rng = random.Random(seed)
    store = CheckingStore()
    net: dict[tuple[str, str], int] = {}
    carts: list[Order] = []
    seen = dict.fromkeys(("changed", "short", "extended", "capped", "late", "replayed"), 0)
    async with stockade.open_engine(
        store=store, durability="durable", max_hold_lifetime=timedelta(seconds=30)
    ) as engine:
        await engine.set_location("north", priority=1)
        await engine.set_location("south", priority=2)
        await engine.set_channel("web", ["north", "south"])
        for sku in SKUS:
            for location in ("default", "north", "south"):
                units = rng.randint(4, 16)
                await engine.set_stock(sku, units, location=location)
                net[sku, location] = units

        def some_lines(lines: dict[str, int]) -> dict[str, int]:
            """The cart after an edit: lines grow, shrink, come and go (at least one stays)."""
            out = dict(lines)
            for _ in range(rng.randint(1, 3)):
                sku = rng.choice(SKUS)
                if sku in out and rng.random() < 0.3 and len(out) > 1:
                    del out[sku]
                else:
                    out[sku] = max(1, out.get(sku, 0) + rng.choice([-2, -1, 1, 2, 4]))
            return out

        async def shopper(n: int) -> None:
            lines = {rng.choice(SKUS): rng.randint(1, 3)}
            channel = "web" if n % 4 == 0 else None
            try:
                cart = await engine.place_order(lines, hold_for=rng.uniform(3, 20), channel=channel)
            except OutOfStock:
                return
            carts.append(cart)
            for step in range(rng.randint(1, 8)):
                await trio.sleep(rng.random() * 6)
                try:
                    if rng.random() < 0.7:
                        key = f"edit-{n}-{step}" if rng.random() < 0.5 else None
                        new = some_lines(cart.lines)
                        cart = await engine.change_order(cart.id, new, idempotency_key=key)
                        seen["changed"] += 1
                        if key is not None and rng.random() < 0.5:  # a client's retry
                            again = await engine.change_order(cart.id, new, idempotency_key=key)
                            assert again.lines == cart.lines
                            seen["replayed"] += 1
                    else:
                        before = cart.expires_at
                        cart = await engine.extend(cart.id, rng.uniform(2, 30))
                        seen["extended"] += cart.expires_at != before
                except OutOfStock:
                    seen["short"] += 1
                except InvalidTransition as refused:
                    if refused.why is not None:
                        seen["capped"] += 1
                        continue
                    seen["late"] += 1  # the hold lapsed first
                    return
            end = rng.choice(["confirm", "cancel", "abandon"])
            try:
                if end == "confirm":
                    await engine.confirm(cart.id)
                elif end == "cancel":
                    await engine.cancel(cart.id)
            except InvalidTransition:
                seen["late"] += 1

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_holds, engine, stop)
            async with trio.open_nursery() as shoppers:
                for n in range(120):
                    shoppers.start_soon(shopper, n)
            stop.set()
        await trio.sleep(60)
        orders = [await engine.get_order(o.id) for o in carts]
        await final_books(engine, store, net, orders)
    assert all(v > 0 for v in seen.values()), seen
    assert {o.status for o in orders} == {"confirmed", "cancelled", "expired"}
