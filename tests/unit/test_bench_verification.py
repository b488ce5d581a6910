"""The comparison bench must catch a contender that oversells, loses orders or leaks stock.

Each broken contender below keeps its stock in a dict, as a careless implementation would; the
real runner drives it and the real verification reads its "store" back.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
import pytest

from bench.compare import sweep
from bench.contenders.base import Contender, Market, Outcome, Place, StoreReport
from bench.flash.sale import EXTRA, SKU
from bench.flash_sale import SaleConfig, Shop, run_sale
from bench.progress import Progress
from bench.report import markdown_section, print_table, rows
from bench.runner import RunResult, Tally, percentile, run_one, verify
from bench.workloads import WORKLOADS, Lines, Workload

SMALL = Workload("small", "3 products, 2-line orders", 3, 2, 1.0)


class DictMarket(Market):
    """Correct: checks and takes every line with no await in between."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.orders: list[Lines] = []

    async def caller(self) -> Place:
        return self.place

    async def place(self, lines: Lines) -> Outcome:
        await anyio.lowlevel.checkpoint()
        if any(self.stock[sku] < qty for sku, qty in lines):
            return Outcome.OUT_OF_STOCK
        for sku, qty in lines:
            self.stock[sku] -= qty
        self.orders.append(lines)
        return Outcome.PLACED

    async def report(self) -> StoreReport:
        return StoreReport(dict(self.stock), len(self.orders))


class Overselling(DictMarket):
    """Checks, yields (a database round trip), then takes: two callers both see the last unit."""

    async def place(self, lines: Lines) -> Outcome:
        if any(self.stock[sku] < qty for sku, qty in lines):
            return Outcome.OUT_OF_STOCK
        await anyio.lowlevel.checkpoint()
        for sku, qty in lines:
            self.stock[sku] -= qty
        self.orders.append(lines)
        return Outcome.PLACED


class Forgetful(DictMarket):
    """Acknowledges every fifth order without storing it."""

    async def place(self, lines: Lines) -> Outcome:
        outcome = await super().place(lines)
        if outcome is Outcome.PLACED and len(self.orders) % 5 == 0:
            self.orders.pop()
        return outcome


class Leaky(DictMarket):
    """Takes the lines one by one and does not give back the ones taken when one is short."""

    async def place(self, lines: Lines) -> Outcome:
        await anyio.lowlevel.checkpoint()
        for sku, qty in lines:
            if self.stock[sku] < qty:
                return Outcome.OUT_OF_STOCK
            self.stock[sku] -= qty
        self.orders.append(lines)
        return Outcome.PLACED


class Flaky(DictMarket):
    """Raises now and then: the caller cannot tell whether stock was taken."""

    async def place(self, lines: Lines) -> Outcome:
        if random.Random(len(self.orders)).random() < 0.3:
            raise ConnectionResetError("connection reset by peer")
        return await super().place(lines)


def contender(market_class: type[DictMarket], *, skip: str | None = None) -> Contender:
    class Fake(Contender):
        name = market_class.__name__.lower()
        description = market_class.__doc__ or ""
        backend = "trio"

        def prepare(self) -> str | None:
            return skip

        @asynccontextmanager
        async def market(self, run: str, stock: dict[str, int]) -> AsyncIterator[Market]:
            yield market_class(stock)

    return Fake()


def run(market_class: type[DictMarket], workload: Workload = SMALL) -> RunResult:
    # 32 callers, far more demand than stock: the busiest products sell out at once
    return run_one(contender(market_class), workload, 32, 0.05, expected_rate=400, run="t")


def test_a_correct_contender_is_verified():
    result = run(DictMarket)
    assert result.placed > 0 and result.out_of_stock > 0  # the run sold out
    assert result.problems == []
    assert result.status == "verified"


def test_an_overselling_contender_fails():
    result = run(Overselling, WORKLOADS["hot"])
    assert result.status == "FAILED"
    assert any(p.startswith("OVERSOLD") for p in result.problems), result.problems


def test_a_contender_that_loses_acknowledged_orders_fails():
    result = run(Forgetful)
    assert result.status == "FAILED"
    assert any("orders but" in p for p in result.problems), result.problems


def test_a_contender_that_keeps_part_of_a_refused_order_fails():
    result = run(Leaky)
    assert result.status == "FAILED"
    assert any("units gone != units acknowledged" in p for p in result.problems), result.problems


def test_indefinite_answers_fail_the_run():
    result = run(Flaky)
    assert result.status == "FAILED"
    assert any("no definite answer" in p and "reset" in p for p in result.problems)


def test_a_crashing_contender_fails_without_stopping_the_bench():
    class Crashing(DictMarket):
        async def report(self) -> StoreReport:
            raise RuntimeError("the store is gone")

    result = run(Crashing)
    assert result.status == "FAILED"
    assert result.problems == ["the run crashed: RuntimeError: the store is gone"]


def test_verify_compares_every_product():
    initial = {"a": 5, "b": 5}
    tally = Tally(placed=2, units=Counter({"a": 2, "b": 1}))
    assert verify(initial, tally, StoreReport({"a": 3, "b": 4}, 2)) == []
    wrong = verify(initial, tally, StoreReport({"a": 3, "b": 3}, 2))
    assert wrong == ["units gone != units acknowledged for 1 products (b: 2 gone, 1 acknowledged)"]
    missing = verify(initial, tally, StoreReport({"a": 3}, 2))
    assert missing == ["1 products missing from the store, e.g. ['b']"]
    held = verify(initial, tally, StoreReport({"a": 3, "b": 4}, 2, {"a": 1, "b": 0}))
    assert held == ["1 units left reserved by direct purchases"]


def test_the_sweep_reports_failed_and_skipped_contenders(capsys):
    results = sweep(
        [contender(DictMarket), contender(Forgetful), contender(DictMarket, skip="no server")],
        [WORKLOADS["hot"]],
        [8],
        0.05,
        Progress(3),
    )
    assert [r.status for r in results] == ["verified", "FAILED", "skipped"]
    print_table(results)
    out = capsys.readouterr().out
    assert "FAILED forgetful hot x8: calibration run: the store holds" in out
    assert "skipped dictmarket: no server" in out
    table = rows(results)["hot"]
    assert [line[-1] for line in table] == ["verified", "FAILED", "skipped"]


def test_the_markdown_names_the_command_and_the_failures():
    from bench.report import Meta

    results = [
        RunResult("stockade-memory", "hot", 1, rate=10.0, placed=5, verified=True),
        RunResult("pg-rowlock", "hot", 1, rate=5.0, placed=5, verified=True),
        RunResult("redis-lua", "hot", 1, problems=["OVERSOLD: x"]),
    ]
    meta = Meta("python -m bench --quick", "2026-11-21 00:00 UTC", "2 cores", 0.3, 12.0)
    text = markdown_section(meta, results, "bench")
    assert "`python -m bench --quick`" in text
    assert "| stockade-memory | 1 | 10 | 5 |" in text and "| 2.0x | verified |" in text
    assert "- FAILED redis-lua hot x1: OVERSOLD: x" in text


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_orders_are_sorted_distinct_known_skus(name):
    workload = WORKLOADS[name]
    skus = workload.skus("p-")
    sampler, rng = workload.sampler(skus), random.Random(7)
    drawn = Counter[str]()
    for _ in range(2000):
        lines = sampler.draw(rng)
        assert len(lines) == workload.lines
        assert [sku for sku, _ in lines] == sorted({sku for sku, _ in lines})
        assert all(sku in skus and qty == 1 for sku, qty in lines)
        drawn.update(sku for sku, _ in lines)
    if workload.skew:
        assert drawn[skus[0]] > drawn[skus[10]] > drawn[skus[500]]  # Zipf: rank matters
    stock = workload.initial_stock(skus, expected_orders=1000)
    assert set(stock) == set(skus) and min(stock.values()) >= 1


def test_percentile_is_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.99) == 0.0


class LenientShop(Shop):
    """A shop that never expires a hold and accepts any payment, however late."""

    def __init__(self, units: int) -> None:
        self.available = units
        self.on_hand = units
        self.orders: dict[str, str] = {}

    async def hold(self, hold_s: int) -> tuple[str, float] | None:
        if self.available == 0:
            return None
        self.available -= 1
        order_id = f"o{len(self.orders)}"
        self.orders[order_id] = "reserved"
        return order_id, time.time() + hold_s

    async def confirm(self, order_id: str) -> bool:
        self.orders[order_id] = "confirmed"
        self.on_hand -= 1
        return True

    async def cancel(self, order_id: str) -> str:
        self.orders[order_id] = "cancelled"
        self.available += 1
        return "cancelled"

    async def status(self, order_id: str) -> str:
        return self.orders[order_id]

    async def level(self, sku: str = SKU) -> tuple[int, int]:
        reserved = sum(1 for s in self.orders.values() if s == "reserved")
        return self.on_hand, reserved


class CartShop(LenientShop):
    """A shop that holds one unit at a time correctly but takes any cart edit without
    checking (or counting) stock, and never expires an extended hold."""

    carts = True

    def __init__(self, units: int) -> None:
        super().__init__(units)
        self.lines: dict[str, dict[str, int]] = {}
        self.sold = Counter[str]()

    async def change(self, order_id: str, lines: dict[str, int]) -> bool:
        self.lines[order_id] = lines
        return True

    async def extend(self, order_id: str, hold_s: int) -> float | None:
        return time.time() + hold_s

    async def confirm(self, order_id: str) -> bool:
        self.orders[order_id] = "confirmed"
        self.sold.update(self.lines.get(order_id, {SKU: 1}))
        return True

    async def level(self, sku: str = SKU) -> tuple[int, int]:
        units = self.on_hand if sku == SKU else self.on_hand // 2
        return units - self.sold[sku], 0


def test_the_flash_sale_catches_late_confirms_and_stuck_holds():
    config = SaleConfig(shoppers=40, units=20, hold_s=1, burst_s=0.05, abandon=0.3, late=0.3,
                        fail=0.1, retries=0)  # fmt: skip
    sale = anyio.run(run_sale, LenientShop(config.units), config, "lenient", backend="trio")
    text = "\n".join(sale.problems)
    assert "confirmed after their hold expired" in text
    assert "late payments were accepted" in text
    assert "units still reserved after every hold ended" in text
    assert "'expired -> reserved'" in text


def test_the_flash_sale_with_carts_catches_edits_that_oversell():
    config = SaleConfig(shoppers=400, units=200, hold_s=1, burst_s=0.05, fail=0, abandon=0,
                        late=0, retries=0, carts=True)  # fmt: skip
    sale = anyio.run(run_sale, CartShop(config.units), config, "careless", backend="trio")
    assert sale.edits > 0 and sale.extended == sale.holds == config.units
    text = "\n".join(sale.problems)
    assert f"OVERSOLD: {SKU}: " in text
    assert f"OVERSOLD: {EXTRA}: " in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seconds", "0"], "--seconds must be above 0"),
        (["--seconds", "61"], "--seconds must be above 0"),
        (["--callers", ""], "--callers takes numbers"),
        (["--callers", "0,16"], "each count must be from 1 to 4096"),
        (["--contenders", "stockade-memory,nope"], "unknown contender: nope"),
        (["--workloads", ""], "unknown workload: (none given)"),
        (["flash-sale", "--units", "0"], "must be at least 1"),
        (["flash-sale", "--fail", "0.9", "--abandon", "0.5"], "summing to <= 1"),
    ],
)
def test_bad_bench_arguments_stop_before_anything_runs(argv, message):
    from bench.__main__ import main

    with pytest.raises(SystemExit, match=re.escape(message)):
        main(argv)


def test_only_the_full_default_sweep_replaces_the_published_results():
    from bench.compare import FULL_CALLERS, FULL_SECONDS, is_full_sweep
    from bench.contenders import CONTENDERS

    everyone, every_workload = list(CONTENDERS), list(WORKLOADS)
    assert is_full_sweep(False, everyone, every_workload, FULL_CALLERS, FULL_SECONDS)
    partial = [
        (True, everyone, every_workload, FULL_CALLERS, FULL_SECONDS),
        (False, everyone[:1], every_workload, FULL_CALLERS, FULL_SECONDS),
        (False, everyone, every_workload[:1], FULL_CALLERS, FULL_SECONDS),
        (False, everyone, every_workload, FULL_CALLERS[:2], FULL_SECONDS),
        (False, everyone, every_workload, FULL_CALLERS, 0.5),
    ]
    for args in partial:
        assert not is_full_sweep(*args), args
