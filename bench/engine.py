"""Engine throughput: single-line direct purchases against a plain check-and-decrement loop.

    ./dev bench engine [--units N] [--tasks N] [--rounds N]

Each workload sells out ``units`` units with ``tasks`` concurrent buyer tasks, every buyer
looping ``place_order({sku: 1})`` until OutOfStock. The baseline runs the same buyers in the same
process against a dict: check, decrement, and one trio checkpoint per purchase (the least any
trio code serving concurrent callers does: no actor, no order record, no journal). Workloads:
one hot product, and units spread over 100 products (buyer i buys product i % 100). A third,
diagnostic row times the actor round trip alone (``stock()`` reads through the same mailbox), to
show how much of the cost is the mailbox and how much is keeping the order.

After every engine run the books are verified: units gone == orders acknowledged, on-hand never
below zero. Each figure is the best of ``rounds`` runs; the ratio divides the engine's by the
baseline's, measured alternately in the same process.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Awaitable, Callable

import trio

import stockade


class VerificationFailed(AssertionError):
    pass


async def _race(tasks: int, buy: Callable[[int], Awaitable[bool]]) -> tuple[int, float]:
    """Run ``tasks`` buyers until each is refused; return (purchases, seconds)."""
    bought = 0

    async def buyer(i: int) -> None:
        nonlocal bought
        while await buy(i):
            bought += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            nursery.start_soon(buyer, i)
    return bought, time.perf_counter() - start


async def baseline(units: int, tasks: int, products: int) -> float:
    per = units // products
    stock = {f"p{n}": per for n in range(products)}
    skus = list(stock)

    async def buy(i: int) -> bool:
        sku = skus[i % products]
        if stock[sku] >= 1:
            stock[sku] -= 1
            await trio.lowlevel.checkpoint()
            return True
        await trio.lowlevel.checkpoint()
        return False

    bought, seconds = await _race(tasks, buy)
    assert bought == per * products
    return bought / seconds


async def engine_run(units: int, tasks: int, products: int) -> float:
    per = units // products
    skus = [f"p{n}" for n in range(products)]
    async with stockade.open_engine(None) as engine:
        for sku in skus:
            await engine.set_stock(sku, per)

        async def buy(i: int) -> bool:
            try:
                await engine.place_order({skus[i % products]: 1})
            except stockade.OutOfStock:
                return False
            return True

        acknowledged, seconds = await _race(tasks, buy)
        gone = 0
        for sku in skus:
            level = await engine.stock(sku)
            if level.on_hand < 0 or level.reserved != 0:
                raise VerificationFailed(f"{sku}: {level}")
            gone += per - level.on_hand
        if gone != acknowledged or acknowledged != per * products:
            raise VerificationFailed(f"units gone {gone} != orders acknowledged {acknowledged}")
    return acknowledged / seconds


async def mailbox_run(units: int, tasks: int, products: int) -> float:
    """Diagnostic: the actor round trip alone, as ``stock()`` reads through the mailbox."""
    per_task = units // tasks
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("p0", 1)

        async def reader(i: int) -> bool:
            counts[i] += 1
            if counts[i] > per_task:
                return False
            await engine.stock("p0")
            return True

        counts = [0] * tasks
        reads, seconds = await _race(tasks, reader)
    return reads / seconds


async def main(units: int, tasks: int, rounds: int) -> None:
    print(f"stockade engine bench: {units:,} units, {tasks} concurrent buyers, best of {rounds}")
    print(f"{'workload':<26}{'engine per s':>17}{'baseline ops/s':>17}{'ratio':>8}  verified")
    workloads = (
        ("hot product", 1, engine_run),
        ("100 products", 100, engine_run),
        ("round trip only (diag.)", 1, mailbox_run),
    )
    for label, products, run in workloads:
        best_engine = best_base = 0.0
        for _ in range(rounds):
            gc.collect()
            best_base = max(best_base, await baseline(units, tasks, products))
            gc.collect()
            best_engine = max(best_engine, await run(units, tasks, products))
        ratio = best_engine / best_base
        print(f"{label:<26}{best_engine:>17,.0f}{best_base:>17,.0f}{ratio:>8.2f}  yes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.units, args.tasks, args.rounds)
