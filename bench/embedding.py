"""Embedding cost: the thread handles against the native trio API, in the same run.

    ./dev bench embedding [--orders N] [--rounds N]

The same workload three ways, each on a fresh memory engine: ``orders`` single-line direct
purchases spread over 100 products.

* native: 1000 trio tasks calling ``Engine.place_order`` (the baseline);
* blocking: 8 host threads calling ``BlockingEngine.place_order`` (engine on its own thread);
* asyncio: 1000 asyncio tasks awaiting ``AsyncioEngine.place_order`` (engine on its own thread).

Every run is verified: orders acknowledged == units gone. Best of ``rounds``; ratios divide by
the native figure measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable

import trio

import stockade

SKUS = [f"p{n}" for n in range(100)]


def verify(levels: list[stockade.StockLevel], per_sku: int, acknowledged: int) -> None:
    gone = sum(per_sku - level.on_hand for level in levels)
    if gone != acknowledged or any(level.on_hand < 0 for level in levels):
        raise AssertionError(f"units gone {gone} != orders acknowledged {acknowledged}")


def native(orders: int) -> float:
    async def main() -> float:
        async with stockade.open_engine(None) as engine:
            for sku in SKUS:
                await engine.set_stock(sku, orders)
            per_task = orders // 1000

            async def buyer(i: int) -> None:
                for k in range(per_task):
                    await engine.place_order({SKUS[(i + k) % 100]: 1})

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i in range(1000):
                    nursery.start_soon(buyer, i)
            rate = per_task * 1000 / (time.perf_counter() - start)
            verify([await engine.stock(s) for s in SKUS], orders, per_task * 1000)
        return rate

    return trio.run(main)


def blocking(orders: int) -> float:
    with stockade.run_in_thread(None) as engine:
        for sku in SKUS:
            engine.set_stock(sku, orders)
        per_thread = orders // 8

        def buyer(i: int) -> None:
            for k in range(per_thread):
                engine.place_order({SKUS[(i + k) % 100]: 1})

        threads = [threading.Thread(target=buyer, args=(i,)) for i in range(8)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = per_thread * 8 / (time.perf_counter() - start)
        verify([engine.stock(s) for s in SKUS], orders, per_thread * 8)
    return rate


def asyncio_tasks(orders: int) -> float:
    async def main() -> float:
        async with stockade.open_asyncio_engine(None) as engine:
            for sku in SKUS:
                await engine.set_stock(sku, orders)
            per_task = orders // 1000

            async def buyer(i: int) -> None:
                for k in range(per_task):
                    await engine.place_order({SKUS[(i + k) % 100]: 1})

            start = time.perf_counter()
            await asyncio.gather(*(buyer(i) for i in range(1000)))
            rate = per_task * 1000 / (time.perf_counter() - start)
            verify([await engine.stock(s) for s in SKUS], orders, per_task * 1000)
        return rate

    return asyncio.run(main())


def main(orders: int, rounds: int) -> None:
    runs: list[tuple[str, Callable[[int], float]]] = [
        ("native trio, 1000 tasks", native),
        ("blocking, 8 threads", blocking),
        ("asyncio, 1000 tasks", asyncio_tasks),
    ]
    best = {label: 0.0 for label, _ in runs}
    for _ in range(rounds):
        for label, run in runs:
            best[label] = max(best[label], run(orders))
    base = best["native trio, 1000 tasks"]
    print(f"stockade embedding bench: {orders:,} direct purchases over 100 products, "
          f"best of {rounds}")  # fmt: skip
    print(f"{'caller':<26}{'orders/s':>12}{'ratio':>8}  verified")
    for label, _ in runs:
        print(f"{label:<26}{best[label]:>12,.0f}{best[label] / base:>8.2f}  yes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.orders, args.rounds)
