"""Allocation cost: the same orders over five locations against one, in the same process.

    ./dev bench locations [--orders N] [--tasks N] [--rounds N]

``orders`` orders of three lines each (distinct products, 1-3 units a line) are placed by
``tasks`` concurrent tasks taking the next order from one shared list, until every order is
placed. Products are many and small (about ``UNITS_PER_PRODUCT`` units each, exactly what the
orders ask for), so every order is placed and the stock sells out exactly:

* the **baseline** keeps every product's units at ``default``, the only location;
* the **five-location** run spreads each product's units evenly over ``default``, ``north``,
  ``south``, ``east`` and ``west`` (priorities 0 to 4). Allocation (``"priority"``) takes a
  line from the first location that has units and splits it when that one runs out, so about
  a fifth of the lines split (the table shows the share measured).

Two workloads: direct purchases, and holds (``hold_for`` ten minutes; they stay held). Each
figure is the best of ``rounds`` runs; each round runs the baseline and then the five locations
on fresh memory engines. The cost ratio is baseline orders/s over five-location orders/s: the
target is at most ``TARGET`` (1.5). After every run the books are verified: every order placed,
each line's allocation adding up to it (one location only in the baseline), and every product
sold out (direct) or wholly reserved (holds), nothing more.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Sequence

import trio

import stockade
from stockade import Order

#: five-location cost / single-location cost, at most
TARGET = 1.5
#: units each product is stocked with, on average (what the orders ask of it)
UNITS_PER_PRODUCT = 20
#: the five locations and their priorities; the baseline has ``default`` only
LOCATIONS = {"default": 0, "north": 1, "south": 2, "east": 3, "west": 4}
HOLD_S = 600.0


class VerificationFailed(AssertionError):
    pass


def make_orders(count: int, seed: int = 1) -> tuple[list[dict[str, int]], dict[str, int]]:
    """``count`` orders of three distinct products (1-3 units a line), and what they ask of
    each product in all."""
    products = max(3, count * 3 * 2 // UNITS_PER_PRODUCT)
    skus = [f"p{n:06d}" for n in range(products)]
    rng = random.Random(seed)
    orders = []
    demand = dict.fromkeys(skus, 0)
    for _ in range(count):
        lines = {sku: rng.randint(1, 3) for sku in sorted(rng.sample(skus, 3))}
        for sku, qty in lines.items():
            demand[sku] += qty
        orders.append(lines)
    return orders, {sku: units for sku, units in demand.items() if units}


def spread(units: int, places: int) -> list[int]:
    """``units`` over ``places`` as evenly as they go (the first ones get the remainder)."""
    return [units // places + (1 if i < units % places else 0) for i in range(places)]


async def run(
    orders: Sequence[dict[str, int]],
    demand: dict[str, int],
    tasks: int,
    locations: list[str],
    hold: bool,
) -> tuple[float, float]:
    """Place every order on a fresh memory engine stocked over ``locations``: (orders/s, the
    share of lines split over several locations). Raises VerificationFailed."""
    async with stockade.open_engine(None) as engine:
        for location in locations:
            if location != "default":
                await engine.set_location(location, priority=LOCATIONS[location])
        stocking = iter(demand.items())

        async def stocker() -> None:
            for sku, units in stocking:
                for location, part in zip(locations, spread(units, len(locations)), strict=True):
                    if part:
                        await engine.set_stock(sku, part, location=location)

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(stocker)
        gc.collect()
        placed: list[Order] = []
        todo = iter(orders)
        hold_for = HOLD_S if hold else None

        async def placer() -> None:
            for lines in todo:
                placed.append(await engine.place_order(lines, hold_for=hold_for))

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(placer)
        seconds = time.perf_counter() - start
        split = await verify(engine, orders, demand, placed, len(locations), hold)
    return len(placed) / seconds, split


async def verify(
    engine: stockade.Engine,
    orders: Sequence[dict[str, int]],
    demand: dict[str, int],
    placed: list[Order],
    locations: int,
    hold: bool,
) -> float:
    """Every order placed with its lines allocated in full; every product sold out, or wholly
    held. Returns the share of lines split over several locations."""
    if len(placed) != len(orders):
        raise VerificationFailed(f"{len(placed)} orders placed of {len(orders)}")
    lines = split = 0
    for order in placed:
        for sku, qty in order.lines.items():
            allocation = order.allocations[sku]
            if sum(allocation.values()) != qty or len(allocation) > locations:
                raise VerificationFailed(f"{order.id}: {sku} allocated {allocation}, not {qty}")
            lines += 1
            split += len(allocation) > 1
    for sku, units in demand.items():
        level = await engine.stock(sku)
        expected = (units, units) if hold else (0, 0)
        if (level.on_hand, level.reserved) != expected or level.available != 0:
            raise VerificationFailed(f"{sku}: {level}, expected (on_hand, reserved) {expected}")
    return split / lines


async def main(count: int, tasks: int, rounds: int) -> None:
    if count < 1 or tasks < 1 or rounds < 1:
        raise SystemExit("--orders, --tasks and --rounds must be at least 1")
    orders, demand = make_orders(count)
    print(
        f"stockade allocation bench: {count:,} orders of 3 lines over {len(demand):,} products "
        f"(~{UNITS_PER_PRODUCT} units each), {tasks} concurrent tasks, best of {rounds}"
    )
    print(f"target: five-location cost / one-location cost <= {TARGET}")
    print(
        f"{'workload':<18}{'1 location /s':>15}{'5 locations /s':>16}{'lines split':>13}"
        f"{'cost ratio':>12}  {'target':<8}verified"
    )
    for label, hold in (("direct purchases", False), ("holds", True)):
        one = five = 0.0
        split = 0.0
        for _ in range(rounds):
            rate, _ = await run(orders, demand, tasks, ["default"], hold)
            one = max(one, rate)
            rate, split = await run(orders, demand, tasks, list(LOCATIONS), hold)
            five = max(five, rate)
        ratio = one / five
        met = "met" if ratio <= TARGET else "NOT met"
        print(f"{label:<18}{one:>15,.0f}{five:>16,.0f}{split:>12.0%} {ratio:>12.2f}  {met:<8}yes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.orders, args.tasks, args.rounds)
