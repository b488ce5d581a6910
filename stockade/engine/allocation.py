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

#: The location every shop has (defined here, re-exported by stockade.engine.locations, which
#: imports this module).
DEFAULT_LOCATION = "default"

__all__ = [
    "AT_DEFAULT",
    "DEFAULT_LOCATION",
    "MAX_SHARED_SKUS",
    "SHARED_BELOW",
    "STRATEGIES",
    "SharedAllocations",
    "Strategy",
    "add",
    "allocate",
    "at_default",
    "first_units",
    "returned_parts",
    "shrink",
    "subtract",
]

Strategy = Literal["priority", "most_available"]
STRATEGIES: tuple[Strategy, ...] = ("priority", "most_available")


#: Quantities below this have a shared ``{"default": qty}`` allocation (see :func:`at_default`).
SHARED_BELOW = 16
#: ``AT_DEFAULT[qty]`` is the shared allocation of ``qty`` units at ``default``.
AT_DEFAULT = [{DEFAULT_LOCATION: qty} for qty in range(SHARED_BELOW)]


def at_default(qty: int) -> dict[str, int]:
    """The allocation of ``qty`` units all at ``default``: one shared dict per small quantity.

    An allocation is never mutated once made (see the module docstring), so orders may share
    one. Sharing matters for speed: every dict an order keeps counts toward CPython's young
    generation, and a single-location order that made its own would add to the collector's
    work per order."""
    return AT_DEFAULT[qty] if qty < SHARED_BELOW else {DEFAULT_LOCATION: qty}


#: Products whose one-line allocations are shared (see :class:`SharedAllocations`).
MAX_SHARED_SKUS = 65_536


class SharedAllocations:
    """The allocations of one-line orders taken all at ``default`` in a small quantity (a
    single-location shop's orders): one ``{sku: {"default": qty}}`` dict shared by every such
    order of that sku and quantity. An order then keeps no more dicts than it did before there
    were locations (one more dict per order measured ~10% slower, in the collector). Bounded:
    past MAX_SHARED_SKUS products it starts again (a bound, not a policy)."""

    def __init__(self) -> None:
        self._by_sku: dict[str, list[dict[str, dict[str, int]] | None]] = {}

    def of(self, sku: str, qty: int) -> dict[str, dict[str, int]]:
        """``{sku: at_default(qty)}``, shared when ``qty < SHARED_BELOW``."""
        if qty >= SHARED_BELOW:
            return {sku: {DEFAULT_LOCATION: qty}}
        shared = self._by_sku.get(sku)
        if shared is None:
            if len(self._by_sku) >= MAX_SHARED_SKUS:
                self._by_sku.clear()
            shared = self._by_sku[sku] = [None] * SHARED_BELOW
        made = shared[qty]
        if made is None:
            made = shared[qty] = {sku: AT_DEFAULT[qty]}
        return made


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


def first_units(allocation: Mapping[str, int], qty: int, *, last: bool = False) -> dict[str, int]:
    """The first ``qty`` units of ``allocation``, filling its locations in its own order (the
    order the units were taken in), or with ``last`` its last ``qty`` units, from its last
    location back. Returns count against a sold order's allocation this way (see
    :func:`returned_parts`). Raises ValueError if ``qty`` is more than the allocation holds (a
    bug)."""
    out: dict[str, int] = {}
    left = qty
    places = list(allocation.items())
    if last:
        places.reverse()
    for location, units in places:
        if not left:
            break
        part = min(units, left)
        out[location] = part
        left -= part
    if left:
        raise ValueError(f"cannot count {qty} units in {dict(allocation)!r}")
    return out


def returned_parts(
    allocation: Mapping[str, int], restocked: int, written_off: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Where a sold line's returned units are, from the counts alone: the ``restocked`` ones
    are its first units (back on hand where the first units were taken), the
    ``written_off`` ones its last units. The two never overlap while ``restocked +
    written_off`` is at most the line, so what each return moves, and what a later whole
    cancel brings back, follows from the order's record (and the books check can verify it
    location by location)."""
    return first_units(allocation, restocked), first_units(allocation, written_off, last=True)


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
