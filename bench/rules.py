"""The cost of a product's sale rules (design.md §13): orders for products with rules against
the same orders for products without, in the same run.

    python -m bench.rules [--units N] [--tasks N] [--rounds N] [--quick]

Each workload sells out ``units`` units over 100 products with ``tasks`` concurrent buyers
(buyer i buys one unit of product i % 100, as customer ``c{i % 1000}``), as bench/engine.py
does:

* **no rules**: the products have no rules and the orders name no customer (today's path:
  ``ledger.rules is None``, checked once per actor batch);
* **no rules, customer**: the same orders naming their customer (the order carries it; no
  rule reads it);
* **rules**: every product has a sale window (open), ``per_order`` and ``per_customer``
  (high enough never to refuse: every order is checked, counted and its count journaled).

The ratio is rules / no rules in time per order (the target is at most ``TARGET``, 1.2). That
no rules costs what it did before rules existed is read from bench/engine.py's rows, run on
both commits (the lead's runs, docs/benchmarks.md). After every run the books are verified:
units gone == orders acknowledged; with rules, the counts add up to the orders.
"""

from __future__ import annotations

import argparse
import gc
from datetime import UTC, datetime, timedelta

import trio

import stockade
from bench.engine import SPREAD, VerificationFailed, _race

#: rules / no rules, in time per order
TARGET = 1.2
CUSTOMERS = 1000


async def run(units: int, tasks: int, *, rules: bool, customer: bool) -> float:
    """Orders per second of one sell-out, verified."""
    per = units // SPREAD
    skus = [f"p{n}" for n in range(SPREAD)]
    async with stockade.open_engine(None) as engine:
        now = datetime.now(UTC)
        for sku in skus:
            await engine.set_stock(sku, per)
            if rules:
                await engine.set_rules(
                    sku, per_order=5, per_customer=units, opens_at=now - timedelta(hours=1),
                    closes_at=now + timedelta(days=1),
                )  # fmt: skip

        async def buy(i: int) -> bool:
            who = f"c{i % CUSTOMERS}" if customer else None
            try:
                await engine.place_order({skus[i % SPREAD]: 1}, customer=who)
            except stockade.OutOfStock:
                return False
            return True

        acknowledged, seconds = await _race(tasks, buy)
        gone = 0
        counted = 0
        for sku in skus:
            level = await engine.stock(sku)
            if level.on_hand < 0 or level.reserved != 0:
                raise VerificationFailed(f"{sku}: {level}")
            gone += per - level.on_hand
            state = engine._ledgers[sku].rules
            counted += 0 if state is None else sum(state.counts.values())
        if gone != acknowledged or acknowledged != per * SPREAD:
            raise VerificationFailed(f"units gone {gone} != orders acknowledged {acknowledged}")
        if rules and counted != acknowledged:
            raise VerificationFailed(f"counted {counted} != orders acknowledged {acknowledged}")
    return acknowledged / seconds


async def main(units: int, tasks: int, rounds: int) -> None:
    if tasks < SPREAD or units < tasks or rounds < 1:
        raise SystemExit(f"--tasks must be at least {SPREAD}, --units at least --tasks, "
                         "--rounds at least 1")  # fmt: skip
    print(f"stockade rules bench: {units:,} units over {SPREAD} products, {tasks} concurrent "
          f"buyers, best of {rounds}")  # fmt: skip
    print(f"target: rules / no rules <= {TARGET} (time per order)")
    best = {"no rules": 0.0, "no rules, customer": 0.0, "rules": 0.0}
    for _ in range(rounds):
        for label in best:
            gc.collect()
            rate = await run(units, tasks, rules=label == "rules", customer=label != "no rules")
            best[label] = max(best[label], rate)
    base = best["no rules"]
    print(f"{'workload':<22}{'orders per s':>14}{'time ratio':>12}  verified")
    for label, rate in best.items():
        print(f"{label:<22}{rate:>14,.0f}{base / rate:>12.2f}  yes")
    ratio = base / best["rules"]
    print(f"rules / no rules: {ratio:.2f} ({'met' if ratio <= TARGET else 'NOT met'})")
    # A per_customer rule needs orders that name their customer: the same orders to products
    # without rules are the like-for-like baseline; both are printed.
    same = best["no rules, customer"] / best["rules"]
    print(
        f"rules / the same orders (naming the customer) without rules: {same:.2f} "
        f"({'met' if same <= TARGET else 'NOT met'})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and once")
    args = parser.parse_args()
    if args.quick:
        args.units, args.tasks, args.rounds = 5_000, 200, 1
    trio.run(main, args.units, args.tasks, args.rounds)
