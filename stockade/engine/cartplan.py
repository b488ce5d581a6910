"""What a cart edit does, worked out without I/O: which lines grow (units to take), which
shrink or go (units to give back, and from where), and the order's allocations after it.

The engine takes the growth through the product actors first; only once all of it is taken
does it apply :func:`settle` and release what shrank (see :mod:`stockade.engine.carts`).
"""

from __future__ import annotations

from collections.abc import Mapping

from stockade.engine.allocation import add, shrink, subtract
from stockade.engine.models import Allocations

__all__ = ["Settled", "growth", "settle"]

#: (allocations after the edit, the moves in the holds {sku: {location: ±units}}, the releases:
#: (sku, the part to give back, or None for the whole hold))
Settled = tuple[Allocations, Allocations, list[tuple[str, dict[str, int] | None]]]


def growth(old: Mapping[str, int], new: Mapping[str, int]) -> dict[str, int]:
    """The units each line grows by (new lines included), in ``new``'s order."""
    return {sku: qty - old.get(sku, 0) for sku, qty in new.items() if qty > old.get(sku, 0)}


def settle(
    old_lines: Mapping[str, int],
    old_allocations: Allocations,
    new_lines: Mapping[str, int],
    taken: Mapping[str, dict[str, int]],
    rank: Mapping[str, int],
) -> Settled:
    """The order after an edit whose growth was ``taken`` (sku → allocation taken). A line
    that shrinks gives back units from the locations last in allocation order (``rank``)
    first; a line that goes gives back its whole hold."""
    allocations: Allocations = {}
    moves: Allocations = {}
    releases: list[tuple[str, dict[str, int] | None]] = []
    for sku, qty in new_lines.items():
        before = old_allocations.get(sku, {})
        if sku in taken:
            allocations[sku] = add(before, taken[sku])
            moves[sku] = dict(taken[sku])
        elif qty < old_lines[sku]:
            part = shrink(before, old_lines[sku] - qty, rank)
            allocations[sku] = subtract(before, part)
            moves[sku] = {location: -units for location, units in part.items()}
            releases.append((sku, part))
        else:
            allocations[sku] = before
    for sku in old_lines:
        if sku not in new_lines:
            moves[sku] = {location: -units for location, units in old_allocations[sku].items()}
            releases.append((sku, None))
    return allocations, moves, releases
