"""Where an order's units come from: pure functions over ``{location: units}`` maps.

An allocation is a ``dict`` from location id to a positive quantity. The functions here never
mutate their arguments (allocations are shared between an order's record and the product's
holds, so they are treated as immutable once made) and never do I/O.

Strategies (the engine option ``allocation``):

* ``"priority"``: take from the candidate locations in the order given (the engine passes them in
  ``(priority, id)`` order), splitting a line across locations when one cannot cover it;
* ``"most_available"``: take from the location with the most available first (ties in
  ``(priority, id)`` order), splitting likewise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = [
    "STRATEGIES",
    "Strategy",
    "add",
    "allocate",
    "shrink",
    "subtract",
]

Strategy = Literal["priority", "most_available"]
STRATEGIES: tuple[Strategy, ...] = ("priority", "most_available")


def allocate(
    qty: int, candidates: Sequence[tuple[str, int]], strategy: Strategy = "priority"
) -> dict[str, int] | None:
    """Split ``qty`` over ``candidates`` (``(location, available)`` in priority order).

    Returns the allocation, or None when the candidates together have less than ``qty``.
    """
    if strategy == "most_available":
        # sorted() is stable: equal availability keeps the priority order
        candidates = sorted(candidates, key=lambda c: -c[1])
    out: dict[str, int] = {}
    left = qty
    for location, available in candidates:
        if available <= 0:
            continue
        part = available if available < left else left
        out[location] = part
        left -= part
        if not left:
            return out
    return None


def add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """``a + b``, location by location (a new dict)."""
    out = dict(a)
    for location, qty in b.items():
        out[location] = out.get(location, 0) + qty
    return out


def subtract(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """``a - b``, location by location, dropping locations left at zero (a new dict).
    Raises ValueError if ``b`` takes more from a location than ``a`` has there (a bug)."""
    out = dict(a)
    for location, qty in b.items():
        left = out.get(location, 0) - qty
        if left < 0:
            raise ValueError(f"cannot take {qty} from {location!r}: only {out.get(location, 0)}")
        if left:
            out[location] = left
        else:
            out.pop(location, None)
    return out


def shrink(allocation: Mapping[str, int], qty: int, rank: Mapping[str, int]) -> dict[str, int]:
    """The part of ``allocation`` to give back when a line shrinks by ``qty`` units: taken from
    the locations last in allocation order (``rank``: location → place) first, so what stays
    is what the strategy would have picked. Locations missing from ``rank`` go first."""
    out: dict[str, int] = {}
    left = qty
    last = len(rank)
    for location in sorted(allocation, key=lambda loc: rank.get(loc, last), reverse=True):
        if not left:
            break
        part = min(allocation[location], left)
        out[location] = part
        left -= part
    if left:
        total = sum(allocation.values())
        raise ValueError(f"cannot give back {qty} units of an allocation of {total}")
    return out
