"""The comparison bench's workloads: which products an order asks for, and how much stock each
product starts with.

Every order line asks for one unit. Stock is sized from the demand a run is expected to see
(the rate the contender reached in a short calibration run just before, with unlimited stock,
times the run's length), so that the busiest products sell out around four fifths into the
run: the never-oversell check then has a boundary to guard, every contender is asked to refuse
orders as well as to take them, and all do so at about the same point of their runs.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

__all__ = ["WORKLOADS", "Lines", "Workload"]

#: An order as every contender receives it: (sku, qty) pairs in sku order, skus distinct.
Lines = list[tuple[str, int]]

#: Stock as a share of the expected demand: below 1, so the hot products run out.
STOCK_SHARE = 0.8


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    products: int
    lines: int
    #: Zipf exponent of product popularity (rank k is chosen with weight 1 / k**skew);
    #: 0 is uniform.
    skew: float

    def skus(self, prefix: str) -> list[str]:
        return [f"{prefix}{n}" for n in range(self.products)]

    def weights(self) -> list[float]:
        raw = [1.0 / (rank**self.skew) for rank in range(1, self.products + 1)]
        total = sum(raw)
        return [w / total for w in raw]

    def sampler(self, skus: list[str]) -> OrderSampler:
        """Draws orders over ``skus``; build it once per run, before the clock starts (it sums
        the weights), and give each caller its own random generator."""
        return OrderSampler(skus, self.weights(), self.lines)

    def initial_stock(self, skus: list[str], expected_orders: float) -> dict[str, int]:
        """Stock per sku: :data:`STOCK_SHARE` of the units ``expected_orders`` would ask of it,
        at least one unit."""
        units = expected_orders * self.lines * STOCK_SHARE
        return {
            sku: max(1, math.ceil(units * weight))
            for sku, weight in zip(skus, self.weights(), strict=True)
        }


class OrderSampler:
    """Draws orders of ``lines`` distinct skus by popularity, each line one unit."""

    def __init__(self, skus: list[str], weights: list[float], lines: int) -> None:
        if lines > len(skus):
            raise ValueError(f"{lines} distinct lines need at least {lines} products")
        self._skus = skus
        self._cumulative = list(itertools.accumulate(weights))
        self._lines = lines

    def _one(self, rng: random.Random) -> str:
        index = bisect.bisect_left(self._cumulative, rng.random() * self._cumulative[-1])
        return self._skus[min(index, len(self._skus) - 1)]

    def draw(self, rng: random.Random) -> Lines:
        if self._lines == 1:
            return [(self._one(rng), 1)]
        chosen: set[str] = set()
        while len(chosen) < self._lines:
            chosen.add(self._one(rng))
        return [(sku, 1) for sku in sorted(chosen)]


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("hot", "one hot product, single-line orders", 1, 1, 0.0),
        Workload("zipf", "1,000 products, Zipf-skewed (s=1), single-line orders", 1000, 1, 1.0),
        Workload("multi", "3-line orders over 1,000 Zipf-skewed products", 1000, 3, 1.0),
    )
}
