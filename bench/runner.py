"""Drive one contender with one workload at one concurrency, then verify it against its store.

The load is closed-loop: ``callers`` tasks each place an order, wait for the answer, and place
the next, until the run's time is up (every order started is answered, so none is in flight
when the store is read). The rate reported is orders placed per second while there was stock to
sell (placed / time of the last placement), and the latencies are those of placed orders: once
the busiest products sell out, refusals come cheap (a durable store answers them without a
commit) and would otherwise flatter whoever sold out first.

The bench keeps its own tally of what was acknowledged; the verification compares it with what
the contender's store holds:

* no product's stock below zero (nothing oversold);
* per product, units gone from stock == units in acknowledged orders;
* orders the store holds == orders acknowledged (none lost, none extra);
* no units left reserved (every order here is a direct purchase);
* every order got a definite answer (an exception leaves the caller not knowing).

A run that breaks any of these is FAILED; so is a run that crashed.
"""

from __future__ import annotations

import collections
import random
import time
from dataclasses import dataclass, field

import anyio

from bench.contenders.base import Contender, Market, Outcome, Place, StoreReport
from bench.workloads import Workload

__all__ = ["RunResult", "Tally", "drive", "percentile", "run_one", "verify"]

#: At most this many answers per run, whatever the rate: bounds the latency list.
MAX_ORDERS_PER_RUN = 2_000_000
#: stock per product in a calibration run: more than MAX_ORDERS_PER_RUN orders can take
UNLIMITED_STOCK = 10**9


@dataclass
class Tally:
    """The bench's own account of a run."""

    placed: int = 0
    out_of_stock: int = 0
    overloaded: int = 0
    errors: int = 0
    first_error: str | None = None
    #: units in acknowledged orders, per sku
    units: collections.Counter[str] = field(default_factory=collections.Counter)
    #: how long each acknowledged order took
    latencies_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: when the last order was acknowledged, from the start
    selling_s: float = 0.0

    @property
    def answered(self) -> int:
        return self.placed + self.out_of_stock + self.overloaded


@dataclass
class RunResult:
    contender: str
    workload: str
    callers: int
    seconds: float = 0.0
    #: orders placed per second while there was stock to sell (up to the last placement)
    rate: float = 0.0
    #: orders answered (placed, out of stock or overloaded) per second over the whole run
    answered_rate: float = 0.0
    placed: int = 0
    out_of_stock: int = 0
    overloaded: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    verified: bool = False
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skipped"
        return "verified" if self.verified else "FAILED"


def percentile(sorted_values: list[float], share: float) -> float:
    """The nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(share * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def drive(
    market: Market,
    workload: Workload,
    skus: list[str],
    callers: int,
    seconds: float,
    seed: int = 0,
    max_orders: int = MAX_ORDERS_PER_RUN,
) -> Tally:
    """Run ``callers`` closed-loop callers for ``seconds`` and tally what they were told."""
    places = [await market.caller() for _ in range(callers)]  # connect before the clock
    sampler = workload.sampler(skus)
    tally = Tally()
    deadline = started = 0.0

    async def caller(place: Place, rng: random.Random) -> None:
        latencies = tally.latencies_s
        while time.perf_counter() < deadline and tally.answered < max_orders:
            lines = sampler.draw(rng)
            start = time.perf_counter()
            try:
                outcome = await place(lines)
            except Exception as exc:  # an indefinite answer: counted, and this caller stops
                tally.errors += 1
                tally.first_error = tally.first_error or f"{type(exc).__name__}: {exc}"
                return
            if outcome is Outcome.PLACED:
                done = time.perf_counter()
                latencies.append(done - start)
                tally.selling_s = max(tally.selling_s, done - started)
                tally.placed += 1
                for sku, qty in lines:
                    tally.units[sku] += qty
            elif outcome is Outcome.OUT_OF_STOCK:
                tally.out_of_stock += 1
            else:
                tally.overloaded += 1

    started = time.perf_counter()
    deadline = started + seconds
    async with anyio.create_task_group() as tg:
        for n, place in enumerate(places):
            tg.start_soon(caller, place, random.Random(seed * 100_003 + n))
    tally.seconds = time.perf_counter() - started
    return tally


def verify(initial: dict[str, int], tally: Tally, report: StoreReport) -> list[str]:
    """What is wrong with a run, comparing the bench's tally with the contender's store;
    empty when nothing is."""
    problems: list[str] = []
    if tally.errors:
        problems.append(
            f"{tally.errors} orders got no definite answer (first: {tally.first_error})"
        )
    missing = sorted(set(initial) - set(report.remaining))
    if missing:
        problems.append(f"{len(missing)} products missing from the store, e.g. {missing[:3]}")
    below = {sku: left for sku, left in report.remaining.items() if left < 0}
    if below:
        sample = dict(sorted(below.items())[:3])
        problems.append(f"OVERSOLD: stock below zero for {len(below)} products, e.g. {sample}")
    wrong = {
        sku: (initial[sku] - report.remaining[sku], tally.units.get(sku, 0))
        for sku in initial
        if sku in report.remaining and initial[sku] - report.remaining[sku] != tally.units[sku]
    }
    if wrong:
        sample_text = ", ".join(
            f"{sku}: {gone} gone, {acked} acknowledged"
            for sku, (gone, acked) in sorted(wrong.items())[:3]
        )
        problems.append(
            f"units gone != units acknowledged for {len(wrong)} products ({sample_text})"
        )
    if report.orders != tally.placed:
        problems.append(
            f"the store holds {report.orders} orders but {tally.placed} were acknowledged"
        )
    held = {sku: n for sku, n in (report.reserved or {}).items() if n}
    if held:
        problems.append(f"{sum(held.values())} units left reserved by direct purchases")
    return problems


def run_one(
    contender: Contender,
    workload: Workload,
    callers: int,
    seconds: float,
    expected_rate: float | None,
    run: str,
    seed: int = 0,
) -> RunResult:
    """One run in a fresh event loop of the contender's kind; never raises for the
    contender's failures (they make the result FAILED). Stock is sized for ``expected_rate``
    orders/s; None stocks every product with more than any run can sell (a calibration run)."""
    skus = workload.skus(f"{run}-")
    if expected_rate is None:
        stock = dict.fromkeys(skus, UNLIMITED_STOCK)
    else:
        stock = workload.initial_stock(skus, expected_rate * seconds)
    result = RunResult(contender.name, workload.name, callers)

    async def main() -> tuple[Tally, StoreReport]:
        async with contender.market(run, stock) as market:
            tally = await drive(market, workload, skus, callers, seconds, seed)
            return tally, await market.report()

    try:
        tally, report = anyio.run(main, backend=contender.backend)
    except Exception as exc:
        result.problems = [f"the run crashed: {type(exc).__name__}: {exc}"]
        return result
    latencies = sorted(tally.latencies_s)
    result.seconds = tally.seconds
    result.rate = tally.placed / tally.selling_s if tally.selling_s else 0.0
    result.answered_rate = tally.answered / tally.seconds if tally.seconds else 0.0
    result.placed = tally.placed
    result.out_of_stock = tally.out_of_stock
    result.overloaded = tally.overloaded
    result.errors = tally.errors
    result.p50_ms = percentile(latencies, 0.50) * 1000
    result.p95_ms = percentile(latencies, 0.95) * 1000
    result.p99_ms = percentile(latencies, 0.99) * 1000
    result.max_ms = (latencies[-1] if latencies else 0.0) * 1000
    result.problems = verify(stock, tally, report)
    result.verified = not result.problems
    return result
