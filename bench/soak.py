"""Soak: memory under a long steady load of orders, and a restart afterwards (design.md §11).

    ./dev bench soak [--orders 2000000] [--window 2] [--out docs/bench]
    ./dev bench soak --orders 20000 --open-holds 2000 --out /tmp/soak   # a quick smoke run

Runs an engine on a fresh SQLite store (durable) with a short idempotency window, so finished
orders leave memory soon after they finish. ``concurrency`` tasks place ``orders`` orders of
1-3 lines over ``products`` products, a steady mix: 40% held then confirmed, 20% held then
cancelled, 20% held for ``hold`` seconds and left to expire, 10% bought at once, 10% bought and
then returned (holds to be confirmed or cancelled are held ten times longer). RSS (after a
collection) is sampled ``samples`` times and printed as a table beside the orders the engine
keeps in memory, the orders retired so far and the hold deadlines scheduled (a finished
hold's deadline stays scheduled until it passes), and drawn to ``OUT/soak.png``. The target: RSS
after all the orders within 10% of RSS after a tenth of them (2M against 200k by default).

Then ``open_holds`` holds of an hour are placed, the engine is closed, and a restart over the
store (history and all) is timed until it answers: the seconds, and per 100k open holds. The
books are checked last (``stockade check``'s check): the run verifies only if they balance.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import msgspec
import trio

import stockade
from bench.memory import rss_mb
from stockade.persistence.audit import check_database
from stockade.persistence.books import Tally

__all__ = ["Sample", "main"]

TARGET = 1.10  # RSS after every order / RSS after a tenth of them


class Sample(msgspec.Struct, frozen=True):
    orders: int
    seconds: float
    rss_mb: float
    in_memory: int
    retired: int
    deadlines: int


class Soak:
    def __init__(self, engine: stockade.Engine, args: argparse.Namespace) -> None:
        self.engine = engine
        self.args = args
        self.next = 0
        self.done = 0
        self.lapsed = 0
        self.samples: list[Sample] = []
        self.started = time.perf_counter()
        self.due = [round(args.orders * k / args.samples) for k in range(1, args.samples + 1)]
        self.tenth = round(args.orders / 10)
        if self.tenth not in self.due:
            self.due = sorted({*self.due, self.tenth})

    def sample(self) -> None:
        gc.collect()
        stats = self.engine.statistics()
        seconds = time.perf_counter() - self.started
        self.samples.append(Sample(self.done, seconds, rss_mb(), stats.orders, stats.retired,
                                   stats.scheduled_expiries))  # fmt: skip

    async def one(self, n: int, rng: random.Random) -> None:
        engine, args = self.engine, self.args
        skus = rng.sample(range(args.products), rng.randint(1, 3))
        lines = {f"sku-{s:05d}": rng.randint(1, 2) for s in skus}
        kind = n % 10
        if kind >= 8:
            order = await engine.place_order(lines)
            if kind == 9:
                await engine.cancel(order.id)  # a return
            return
        # holds to be confirmed or cancelled get longer, so they seldom lapse first
        order = await engine.place_order(lines, hold_for=args.hold * (1 if kind >= 6 else 10))
        if kind < 4:
            try:
                await engine.confirm(order.id)
            except stockade.InvalidTransition:
                self.lapsed += 1  # it expired before it was paid for: as in a shop
        elif kind < 6:
            await engine.cancel(order.id)
        # else: left to expire

    async def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.next < self.args.orders:
            n = self.next
            self.next += 1
            await self.one(n, rng)
            self.done += 1
            if self.due and self.done >= self.due[0]:
                self.due.pop(0)
                self.sample()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for seed in range(self.args.concurrency):
                nursery.start_soon(self.worker, seed)


async def soak(url: str, args: argparse.Namespace) -> tuple[list[Sample], int]:
    window = timedelta(seconds=args.window)
    async with stockade.open_engine(url, idempotency_ttl=window) as engine:
        for s in range(args.products):
            await engine.set_stock(f"sku-{s:05d}", 10**9)
        run = Soak(engine, args)
        run.sample()
        await run.run()
        for n in range(args.open_holds):  # what the restart will have to load
            await engine.place_order({f"sku-{n % args.products:05d}": 1}, hold_for=3600)
        return run.samples, run.lapsed


async def restart(url: str, args: argparse.Namespace) -> tuple[float, int]:
    start = time.perf_counter()
    async with stockade.open_engine(url, idempotency_ttl=timedelta(seconds=args.window)) as e:
        seconds = time.perf_counter() - start
        holds = e.statistics().scheduled_expiries
    assert holds >= args.open_holds, (holds, args.open_holds)
    return seconds, holds


def plot(samples: list[Sample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, rss = plt.subplots(figsize=(8, 4.5))
    orders = [s.orders for s in samples]
    rss.plot(orders, [s.rss_mb for s in samples], marker="o", color="tab:blue")
    rss.set_xlabel("orders placed")
    rss.set_ylabel("RSS, MB", color="tab:blue")
    rss.set_ylim(bottom=0)
    kept = rss.twinx()
    kept.plot(orders, [s.in_memory for s in samples], marker=".", color="tab:orange")
    kept.set_ylabel("orders in memory", color="tab:orange")
    kept.set_ylim(bottom=0)
    rss.set_title("stockade soak: memory under a steady load (SQLite, short idempotency window)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2_000_000)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--window", type=float, default=2.0, help="idempotency window, s")
    parser.add_argument("--hold", type=float, default=1.0, help="hold of the holds, s")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--open-holds", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'soak.db')}"
        samples, lapsed = trio.run(soak, url, args)
        restart_s, holds = trio.run(restart, url, args)
        report = trio.run(check_database, url, Tally(keep=5))
    print(f"soak: {args.orders:,} orders over {args.products:,} products, "
          f"{args.concurrency} tasks, idempotency window {args.window:g} s, holds of "
          f"{args.hold:g} s (SQLite); {lapsed:,} holds lapsed before their confirm")  # fmt: skip
    print(f"{'orders':>12}{'seconds':>10}{'RSS MB':>10}{'in memory':>12}{'retired':>12}"
          f"{'deadlines':>12}")  # fmt: skip
    for s in samples:
        print(f"{s.orders:>12,}{s.seconds:>10.1f}{s.rss_mb:>10.1f}{s.in_memory:>12,}"
              f"{s.retired:>12,}{s.deadlines:>12,}")  # fmt: skip
    tenth = next(s for s in samples if s.orders >= args.orders / 10)
    ratio = samples[-1].rss_mb / tenth.rss_mb
    met = "met" if ratio <= TARGET else "NOT met"
    print(f"RSS after {samples[-1].orders:,} / after {tenth.orders:,}: {ratio:.3f} "
          f"(target <= {TARGET:.2f}: {met})")  # fmt: skip
    per = restart_s * 100_000 / holds if holds else float("nan")
    print(f"restart with {holds:,} open holds and {args.orders:,} orders of history: "
          f"{restart_s:.2f} s ({per:.2f} s per 100k open holds)")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    plot(samples, args.out / "soak.png")
    print(f"plot: {args.out / 'soak.png'}")
    if not report.balanced:
        for finding in report.findings:
            print(f"  mismatch: {finding.detail}")
        print(f"books: FAILED ({report.mismatches} mismatches)")
        return 1
    print(f"books: verified ({report.orders:,} orders, {report.levels:,} stock levels balance)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
