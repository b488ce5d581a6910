"""Catalogue cost: load N products into an engine; print RSS and load time.

    ./dev bench memory [--products N] [--concurrency N] [--located-products N] [--locations N]

Products are loaded through the public API (``set_stock``, ``concurrency`` calls in flight)
into a memory engine, so every product goes through its actor and the journal. The baseline
beside it is the same catalogue as a plain dict of ``sku -> [on_hand, reserved]``: the least a
program that tracks stock per product must hold. RSS is read from /proc before and after each.
Afterwards every product is checked to be there, with its stock, and no actor is left running.
A second row opens an engine over a store already holding the catalogue: a restart's load
(the store's own copy, built before the first reading, is not counted).

A second catalogue keeps its stock at several locations: ``located-products`` products (100k)
each stocked at ``locations`` locations (10), a million stock rows, loaded from a store as
after a restart, beside a baseline dict of ``sku -> {location: [on_hand, reserved]}``.
Target for each engine row: at most ``TARGET_MB`` (500 MB).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import trio

import stockade
from stockade import Location

#: RSS an engine's catalogue may take, at most
TARGET_MB = 500


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
    store.state.stock = {(f"sku-{n:08d}", "default"): (n % 100, 0) for n in range(products)}

    async def check(engine: stockade.Engine) -> None:
        assert (await engine.stock(f"sku-{products - 1:08d}")).on_hand == (products - 1) % 100

    return await opened(store, check)


def located_sites(locations: int) -> list[str]:
    """``default`` and ``locations - 1`` more."""
    return ["default", *(f"site-{n:02d}" for n in range(1, locations))]


async def restart_located(products: int, locations: int) -> tuple[float, float, int]:
    """Open an engine over a store holding ``products`` products stocked at each of
    ``locations`` locations (a restart of a multi-location shop)."""
    sites = located_sites(locations)
    store = stockade.MemoryStore()
    store.state.locations = {site: Location(site, priority=i) for i, site in enumerate(sites)}
    store.state.stock = {
        (f"sku-{n:08d}", site): ((n + i) % 100 + 1, 0)
        for n in range(products)
        for i, site in enumerate(sites)
    }

    async def check(engine: stockade.Engine) -> None:
        stats = engine.statistics()
        assert stats.products == products and stats.locations == locations, stats
        for n in (0, products - 1):
            levels = await engine.stock_by_location(f"sku-{n:08d}")
            assert [(x.location, x.on_hand) for x in levels] == [
                (site, (n + i) % 100 + 1) for i, site in enumerate(sites)
            ], levels

    return await opened(store, check)


async def opened(
    store: stockade.MemoryStore, check: Callable[[stockade.Engine], Awaitable[None]]
) -> tuple[float, float, int]:
    """Open an engine over ``store``: (seconds until it answers, MB the process grew, products
    loaded), ``check`` run on it before it closes (the store's copy is built before)."""
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    async with stockade.open_engine(store=store) as engine:
        seconds = time.perf_counter() - start
        gc.collect()
        grown = rss_mb() - before
        await check(engine)
        count = engine.statistics().products
    return seconds, grown, count


def baseline_located(products: int, locations: int) -> tuple[float, float]:
    sites = located_sites(locations)
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    table = {
        f"sku-{n:08d}": {site: [(n + i) % 100 + 1, 0] for i, site in enumerate(sites)}
        for n in range(products)
    }
    seconds = time.perf_counter() - start
    grown = rss_mb() - before
    assert len(table) == products
    return seconds, grown


def baseline(products: int) -> tuple[float, float]:
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    table = {f"sku-{n:08d}": [n % 100, 0] for n in range(products)}
    seconds = time.perf_counter() - start
    grown = rss_mb() - before
    assert len(table) == products
    return seconds, grown


def measure_apart(part: str, products: int, concurrency: int, locations: int) -> dict[str, float]:
    """Run one side in a fresh interpreter, so neither inherits memory the other freed."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--part", part, "--products", str(products),
         "--concurrency", str(concurrency), "--locations", str(locations)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out)
    return result


def run_part(part: str, products: int, concurrency: int, locations: int) -> None:
    if part == "engine":
        seconds, grown, _ = trio.run(load, products, concurrency)
    elif part == "restart":
        seconds, grown, _ = trio.run(restart, products)
    elif part == "restart-located":
        seconds, grown, _ = trio.run(restart_located, products, locations)
    elif part == "baseline-located":
        seconds, grown = baseline_located(products, locations)
    else:
        seconds, grown = baseline(products)
    print(json.dumps({"seconds": seconds, "rss_mb": grown}))


def main(products: int, concurrency: int, located: int, locations: int) -> None:
    if min(products, concurrency, located, locations) < 1:
        raise SystemExit("every count must be at least 1")
    engine = measure_apart("engine", products, concurrency, 1)
    restarted = measure_apart("restart", products, concurrency, 1)
    base = measure_apart("baseline", products, concurrency, 1)
    spread = measure_apart("restart-located", located, concurrency, locations)
    spread_base = measure_apart("baseline-located", located, concurrency, locations)
    print(f"stockade memory bench: {products:,} products loaded with set_stock "
          f"({concurrency} loaders), and {located:,} products at {locations} locations from a "
          "store; each side in its own process")  # fmt: skip
    print(f"target: each engine row <= {TARGET_MB} MB")
    print(f"{'':<38}{'load s':>8}{'RSS MB':>8}{'bytes/product':>15}  target")
    rows = (
        ("engine, set_stock each", engine, products, True),
        ("engine, start from store", restarted, products, True),
        ("baseline dict of lists", base, products, False),
        (f"engine, {locations} locations, from store", spread, located, True),
        (f"baseline dict of {locations}-location dicts", spread_base, located, False),
    )
    for label, r, count, engine_row in rows:
        per = r["rss_mb"] * 2**20 / count
        met = ("met" if r["rss_mb"] <= TARGET_MB else "NOT met") if engine_row else "-"
        print(f"{label:<38}{r['seconds']:>8.2f}{r['rss_mb']:>8.0f}{per:>15.0f}  {met}")
    print(f"ratio (engine RSS / baseline RSS): {ratio(engine, base)} with one location, "
          f"{ratio(spread, spread_base)} with {locations}")  # fmt: skip


def ratio(engine: dict[str, float], base: dict[str, float]) -> str:
    """Engine RSS over baseline RSS ("-" when the baseline grew by nothing measurable)."""
    return f"{engine['rss_mb'] / base['rss_mb']:.2f}" if base["rss_mb"] > 0 else "-"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--located-products", type=int, default=100_000)
    parser.add_argument("--locations", type=int, default=10)
    parts = ["engine", "restart", "baseline", "restart-located", "baseline-located"]
    parser.add_argument("--part", choices=parts, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        run_part(args.part, args.products, args.concurrency, args.locations)
    else:
        main(args.products, args.concurrency, args.located_products, args.locations)
