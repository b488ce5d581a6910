"""Catalogue cost: load N products into an engine; print RSS and load time.

    ./dev bench memory [--products N] [--concurrency N]

Products are loaded through the public API (``set_stock``, ``concurrency`` calls in flight)
into a memory engine, so every product goes through its actor and the journal. The baseline
beside it is the same catalogue as a plain dict of ``sku -> [on_hand, reserved]``: the least a
program that tracks stock per product must hold. RSS is read from /proc before and after each.
Afterwards every product is checked to be there, with its stock, and no actor is left running.
A second row opens an engine over a store already holding the catalogue: a restart's load
(the store's own copy, built before the first reading, is not counted).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time

import trio

import stockade


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


async def load(products: int, concurrency: int) -> tuple[float, float, int]:
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    async with stockade.open_engine(None) as engine:
        limit = trio.CapacityLimiter(concurrency)

        async def put(first: int) -> None:
            async with limit:
                for n in range(first, min(first + 1000, products)):
                    await engine.set_stock(f"sku-{n:08d}", n % 100)

        async with trio.open_nursery() as nursery:
            for first in range(0, products, 1000):
                nursery.start_soon(put, first)
        seconds = time.perf_counter() - start
        gc.collect()
        grown = rss_mb() - before
        stats = engine.statistics()
        assert stats.products == products, stats
        assert stats.active_actors == 0, stats
        for n in (0, products // 2, products - 1):
            level = await engine.stock(f"sku-{n:08d}")
            assert level.on_hand == n % 100, level
        count = stats.products
    return seconds, grown, count


async def restart(products: int) -> tuple[float, float, int]:
    """Open an engine over a store that already holds the catalogue (what a restart does)."""
    store = stockade.MemoryStore()
    store.state.products = {f"sku-{n:08d}": (n % 100, 0) for n in range(products)}
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    async with stockade.open_engine(store=store) as engine:
        seconds = time.perf_counter() - start
        gc.collect()
        grown = rss_mb() - before
        count = engine.statistics().products
        assert (await engine.stock(f"sku-{products - 1:08d}")).on_hand == (products - 1) % 100
    return seconds, grown, count


def baseline(products: int) -> tuple[float, float]:
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    table = {f"sku-{n:08d}": [n % 100, 0] for n in range(products)}
    seconds = time.perf_counter() - start
    grown = rss_mb() - before
    assert len(table) == products
    return seconds, grown


def measure_apart(part: str, products: int, concurrency: int) -> dict[str, float]:
    """Run one side in a fresh interpreter, so neither inherits memory the other freed."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--part", part, "--products", str(products),
         "--concurrency", str(concurrency)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out)
    return result


def run_part(part: str, products: int, concurrency: int) -> None:
    if part == "engine":
        seconds, grown, _ = trio.run(load, products, concurrency)
    elif part == "restart":
        seconds, grown, _ = trio.run(restart, products)
    else:
        seconds, grown = baseline(products)
    print(json.dumps({"seconds": seconds, "rss_mb": grown}))


def main(products: int, concurrency: int) -> None:
    engine = measure_apart("engine", products, concurrency)
    restarted = measure_apart("restart", products, concurrency)
    base = measure_apart("baseline", products, concurrency)
    print(f"stockade memory bench: {products:,} products loaded with set_stock "
          f"({concurrency} loaders), each side in its own process")  # fmt: skip
    print(f"{'':<26}{'load s':>10}{'RSS MB':>10}{'bytes/product':>15}")
    rows = (
        ("engine, set_stock each", engine),
        ("engine, start from store", restarted),
        ("baseline dict of lists", base),
    )
    for label, r in rows:
        per = r["rss_mb"] * 2**20 / products
        print(f"{label:<26}{r['seconds']:>10.2f}{r['rss_mb']:>10.0f}{per:>15.0f}")
    print(f"ratio (engine RSS / baseline RSS): {engine['rss_mb'] / base['rss_mb']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--part", choices=["engine", "restart", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        run_part(args.part, args.products, args.concurrency)
    else:
        main(args.products, args.concurrency)
