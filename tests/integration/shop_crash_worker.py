"""Loads over locations and carts that a crash test kills with SIGKILL: concurrent shoppers and
a merchant on a durable store, printing one line per acknowledged answer, flushed at once.

    python -m tests.integration.shop_crash_worker locations|carts DATABASE_URL

Each line is ``<kind> <JSON>``. Answers: ``order`` (an Order: placed, confirmed or cancelled),
``change`` and ``extend`` (the Order after a cart edit or an extension), ``transfer`` and
``adjust`` (the change's reason, unique per run), ``location`` (the Location as set). Before a
call whose effect the test must tell apart, the worker says what it is about to do:
``try-change`` (``[order id, lines]``), ``try-extend`` (the order id), ``try-location`` (the
Location), ``try-late`` (the id of an expired order about to be paid late), ``try-return``
(the id of a sold order about to have units returned); ``refused`` (the order id) says a cart
edit, an extension or a late payment was refused and changed nothing. On a fresh store the
worker first sets up locations, channels and stock; on a store it set up before (a restart) it
carries on with what is there.
"""

from __future__ import annotations

import random
import secrets
import sys
from typing import Any

import msgspec
import trio

import stockade
from stockade import Location

#: locations (id -> priority) and channels of the location workload; ``default`` always exists
LOCATIONS = {"default": 0, "north": 1, "south": 2, "east": 3, "west": 4}
CHANNELS = {
    "web": ["north", "south"],
    "shops": ["south", "east", "west"],
    "outlet": ["default", "west"],
}
SKUS = ["a", "b", "c", "d"]
#: the carts' products: plenty of most, a few of ``scarce`` (so that some edits are refused)
CART_SKUS = ["c0", "c1", "c2", "c3", "c4", "scarce"]
CART_LOCATIONS = {"default": 0, "north": 1, "south": 2}
INITIAL = 2_000
SCARCE = 12

_encode = msgspec.json.Encoder().encode
#: returns made by this run, to write every third off
_RETURNS = [0]


def say(kind: str, payload: Any) -> None:
    sys.stdout.write(f"{kind} {_encode(payload).decode()}\n")
    sys.stdout.flush()


# -- locations ------------------------------------------------------------------------------


async def set_up_locations(engine: stockade.Engine) -> None:
    for location, priority in LOCATIONS.items():
        await engine.set_location(location, priority=priority)
    for channel, locations in CHANNELS.items():
        await engine.set_channel(channel, locations)
    for i, sku in enumerate(SKUS):  # half the places short, so that lines split
        for j, location in enumerate(LOCATIONS):
            await engine.set_stock(sku, SCARCE if (i + j) % 2 else INITIAL, location=location)


async def location_shopper(engine: stockade.Engine, rng: random.Random) -> None:
    """Orders anywhere, by channel, pinned to a location or both; direct purchases, holds that
    are confirmed (late, when they lapsed first), cancelled, returned (whole, or some units
    restocked or written off) or left to lapse."""
    while True:
        lines = {s: rng.randint(1, 3) for s in rng.sample(SKUS, rng.randint(1, 3))}
        where = rng.choice(["anywhere", "channel", "pinned", "both"])
        channel = rng.choice(list(CHANNELS)) if where in ("channel", "both") else None
        location = None
        if where == "pinned":
            location = rng.choice(list(LOCATIONS))
        elif channel is not None and where == "both":
            location = rng.choice(CHANNELS[channel])
        try:
            order = await engine.place_order(
                lines,
                hold_for=rng.choice([None, 0.05, 5.0]),
                channel=channel,
                location=location,
            )
        except stockade.OutOfStock:
            await trio.sleep(0.01)
            continue
        say("order", order)
        if rng.random() < 0.2:
            await trio.sleep(0.1)  # a 0.05 s hold lapses
        action = rng.random()
        try:
            if action < 0.4:
                say("order", await engine.confirm(order.id))
                if action < 0.1:
                    say("order", await engine.cancel(order.id))  # a return
                elif action < 0.25:
                    await return_some(engine, rng, order)
            elif action < 0.6:
                say("order", await engine.cancel(order.id))
        except stockade.InvalidTransition:
            if action < 0.4 and rng.random() < 0.5:  # the payment came after the hold lapsed
                say("try-late", order.id)
                try:
                    say("order", await engine.confirm(order.id, late=True))
                except stockade.OutOfStock:
                    say("refused", order.id)


async def return_some(engine: stockade.Engine, rng: random.Random, order: stockade.Order) -> None:
    """Return one unit of a line at a time, once or twice: every third return of the run is
    written off, the others restocked (so a run that returns units writes some off)."""
    for _ in range(rng.randint(1, 2)):
        left = [sku for sku, qty in order.lines.items() if order.returned.get(sku, 0) < qty]
        if not left:
            return
        say("try-return", order.id)
        _RETURNS[0] += 1
        order = await engine.return_units(
            order.id, {rng.choice(left): 1}, restock=_RETURNS[0] % 3 != 0
        )
        say("order", order)


async def stock_keeper(engine: stockade.Engine, rng: random.Random) -> None:
    """Transfers and adjustments, one after another, each with a reason unique to it."""
    run = secrets.token_hex(4)
    for n in range(1_000_000):
        await trio.sleep(rng.uniform(0, 0.005))
        sku = rng.choice(SKUS)
        reason = f"{run}-{n}"
        if rng.random() < 0.5:
            source, destination = rng.sample(list(LOCATIONS), 2)
            try:
                await engine.transfer(sku, rng.randint(1, 20), source, destination, reason)
            except stockade.OutOfStock:
                continue
            say("transfer", reason)
        else:
            location = rng.choice(list(LOCATIONS))
            try:
                await engine.adjust_stock(sku, rng.choice([-3, -1, 2, 5, 20]), reason, location)
            except stockade.StockConflict:
                continue  # below what is reserved there: refused, nothing changed
            say("adjust", reason)


async def site_manager(engine: stockade.Engine, rng: random.Random) -> None:
    """Locations deactivated, reactivated and reprioritised one after another (at least three
    stay active); the only task that sets locations."""
    active = {location.id: location.active for location in engine.locations()}
    while True:
        await trio.sleep(rng.uniform(0, 0.02))
        target = rng.choice(list(LOCATIONS))
        # reactivate an inactive one; deactivate an active one while more than three are
        wanted = Location(
            target,
            priority=rng.randint(-5, 5),
            active=not active[target] or sum(active.values()) <= 3,
        )
        say("try-location", wanted)
        done = await engine.set_location(wanted.id, wanted.name, wanted.priority, wanted.active)
        active[target] = done.active
        say("location", done)


# -- carts ----------------------------------------------------------------------------------


async def set_up_carts(engine: stockade.Engine) -> None:
    for location, priority in CART_LOCATIONS.items():
        await engine.set_location(location, priority=priority)
    await engine.set_channel("web", ["north", "south"])
    for sku in CART_SKUS:
        for location in CART_LOCATIONS:
            units = SCARCE if sku == "scarce" else INITIAL
            await engine.set_stock(sku, units, location=location)


def edited(rng: random.Random, lines: dict[str, int]) -> dict[str, int]:
    """A cart after an edit: one line up (or a new one), one down or gone; one line stays."""
    out = dict(lines)
    grow = rng.choice(CART_SKUS)
    out[grow] = out.get(grow, 0) + rng.randint(1, 4)
    shrink = rng.choice([sku for sku in out if sku != grow] or [grow])
    if shrink != grow:
        if out[shrink] > 1 and rng.random() < 0.6:
            out[shrink] -= rng.randint(1, out[shrink] - 1)
        else:
            del out[shrink]
    return out


async def cart_shopper(engine: stockade.Engine, rng: random.Random) -> None:
    """Carts that are edited and extended a few times, then paid for, cancelled or left."""
    while True:
        lines = {s: rng.randint(1, 3) for s in rng.sample(CART_SKUS[:-1], rng.randint(1, 3))}
        try:
            cart = await engine.place_order(
                lines, hold_for=rng.uniform(20, 60), channel=rng.choice([None, None, "web"])
            )
        except stockade.OutOfStock:
            await trio.sleep(0.01)
            continue
        say("order", cart)
        for _ in range(rng.randint(1, 6)):
            await trio.sleep(rng.uniform(0, 0.02))
            try:
                if rng.random() < 0.75:
                    new = edited(rng, cart.lines)
                    say("try-change", [cart.id, new])
                    cart = await engine.change_order(cart.id, new)
                    say("change", cart)
                else:
                    say("try-extend", cart.id)
                    cart = await engine.extend(cart.id, rng.uniform(30, 120))
                    say("extend", cart)
            except (stockade.OutOfStock, stockade.InvalidTransition):
                say("refused", cart.id)
        end = rng.random()
        if end < 0.5:
            say("order", await engine.confirm(cart.id))
        elif end < 0.75:
            say("order", await engine.cancel(cart.id))


async def main(workload: str, database: str) -> None:
    async with stockade.open_engine(database) as engine:
        locations = LOCATIONS if workload == "locations" else CART_LOCATIONS
        if {location.id for location in engine.locations()} != set(locations):
            await (set_up_locations if workload == "locations" else set_up_carts)(engine)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        async with trio.open_nursery() as nursery:
            if workload == "locations":
                nursery.start_soon(site_manager, engine, random.Random())
                for _ in range(3):
                    nursery.start_soon(stock_keeper, engine, random.Random())
                for _ in range(40):
                    nursery.start_soon(location_shopper, engine, random.Random())
            else:
                for _ in range(40):
                    nursery.start_soon(cart_shopper, engine, random.Random())


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("locations", "carts"):
        sys.exit(__doc__)
    trio.run(main, sys.argv[1], sys.argv[2])
