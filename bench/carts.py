"""Cart edits: ``change_order`` on a 3-line cart against ``place_order`` of the same lines, in
the same process.

    ./dev bench carts [--edits N] [--tasks N] [--rounds N]

Each of ``tasks`` concurrent tasks owns three products and one held cart of them, ``{a: 2, b:
2, c: 2}``, and edits it ``edits / tasks`` times, one line up and one down each time: to ``{a:
3, b: 1, c: 2}``, then back (``b`` up, ``a`` down), and so on. Every edit takes one unit
through one product's actor, releases one through another's, and journals the change. The
**baseline** beside it places the same lines as new holds the same number of times, by the same
tasks on the same products: three lines taken through three actors, journaled. The ratio is
edits/s over placements/s; it should be close to 1 (an edit costs what a placement of the
cart costs).

Each figure is the best of ``rounds`` runs; each round runs the placements and then the edits
on fresh memory engines. After every run the books are verified: each cart holds the lines of
its last edit, each product's ``reserved`` is what the carts (or the placed holds) list, and
the number of edits (placements) counted by the engine is the number made.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Awaitable, Callable

import trio

import stockade

#: the cart, and the cart after an edit: one line up, one down
CART = ({"a": 2, "b": 2, "c": 2}, {"a": 3, "b": 1, "c": 2})
HOLD_S = 3600.0
STOCK = 10_000_000


class VerificationFailed(AssertionError):
    pass


def lines_for(task: int, n: int) -> dict[str, int]:
    """Task ``task``'s cart after its ``n``-th edit (its own three products)."""
    return {f"{name}{task:05d}": qty for name, qty in CART[n % 2].items()}


async def stocked(engine: stockade.Engine, tasks: int) -> None:
    async with trio.open_nursery() as nursery:
        for task in range(tasks):
            for sku in lines_for(task, 0):
                nursery.start_soon(engine.set_stock, sku, STOCK)


async def timed(tasks: int, work: Callable[[int], Awaitable[None]]) -> float:
    """Seconds until ``work(task)`` has returned for every task, all run at once."""
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for task in range(tasks):
            nursery.start_soon(work, task)
    return time.perf_counter() - start


async def edit_run(tasks: int, per_task: int) -> float:
    """Edits per second; every cart verified afterwards."""
    async with stockade.open_engine(None) as engine:
        await stocked(engine, tasks)
        carts = [await engine.place_order(lines_for(t, 0), hold_for=HOLD_S) for t in range(tasks)]
        gc.collect()

        async def editor(task: int) -> None:
            cart_id = carts[task].id
            for n in range(1, per_task + 1):
                await engine.change_order(cart_id, lines_for(task, n))

        seconds = await timed(tasks, editor)
        if engine.statistics().changed != tasks * per_task:
            raise VerificationFailed(f"{engine.statistics().changed} edits counted")
        for task, cart in enumerate(carts):
            lines = (await engine.get_order(cart.id)).lines
            if lines != lines_for(task, per_task):
                raise VerificationFailed(f"cart {cart.id} holds {lines}, not its last edit's")
            await expect_reserved(engine, lines)
    return tasks * per_task / seconds


async def place_run(tasks: int, per_task: int) -> float:
    """Placements per second of the carts' lines as new holds; verified afterwards."""
    async with stockade.open_engine(None) as engine:
        await stocked(engine, tasks)
        gc.collect()

        async def placer(task: int) -> None:
            for n in range(1, per_task + 1):
                await engine.place_order(lines_for(task, n), hold_for=HOLD_S)

        seconds = await timed(tasks, placer)
        if engine.statistics().placed != tasks * per_task:
            raise VerificationFailed(f"{engine.statistics().placed} placements counted")
        odd, even = (per_task + 1) // 2, per_task // 2  # placements of CART[1], of CART[0]
        for task in range(tasks):
            first, second = lines_for(task, 0), lines_for(task, 1)
            await expect_reserved(engine, {s: q * odd + first[s] * even for s, q in second.items()})
    return tasks * per_task / seconds


async def expect_reserved(engine: stockade.Engine, reserved: dict[str, int]) -> None:
    """Each product of ``reserved`` has that many units reserved, of STOCK on hand."""
    for sku, qty in reserved.items():
        level = await engine.stock(sku)
        if (level.on_hand, level.reserved) != (STOCK, qty):
            raise VerificationFailed(f"{sku}: {level}, expected {qty} reserved")


async def main(edits: int, tasks: int, rounds: int) -> None:
    if tasks < 1 or rounds < 1 or edits < tasks:
        raise SystemExit("--tasks and --rounds must be at least 1, --edits at least --tasks")
    per_task = edits // tasks
    print(
        f"stockade cart bench: {per_task * tasks:,} edits of a 3-line cart (one line up, one "
        f"down) by {tasks} tasks, against as many placements of the same lines; best of {rounds}"
    )
    best_edit = best_place = 0.0
    for _ in range(rounds):
        gc.collect()
        best_place = max(best_place, await place_run(tasks, per_task))
        gc.collect()
        best_edit = max(best_edit, await edit_run(tasks, per_task))
    print(f"{'call':<34}{'per s':>10}{'ratio':>8}  verified")
    print(f"{'place_order (baseline)':<34}{best_place:>10,.0f}{1:>8.2f}  yes")
    print(f"{'change_order':<34}{best_edit:>10,.0f}{best_edit / best_place:>8.2f}  yes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.edits, args.tasks, args.rounds)
