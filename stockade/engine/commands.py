"""Commands a product actor accepts: imperative, one per kind of change or read.

Allocations (``{location: units}``) in commands are never mutated by the ledger.
"""

from __future__ import annotations

import msgspec

from stockade.engine.locations import DEFAULT_LOCATION, Where
from stockade.engine.models import ProductRules

__all__ = [
    "Adjust",
    "Command",
    "Confirm",
    "GiveBack",
    "Read",
    "ReadLocations",
    "Release",
    "Return",
    "SetRules",
    "SetStock",
    "Take",
    "Transfer",
]


class Take(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Take ``qty`` units for an order: held (``hold``) or sold outright, from the active
    locations in ``where`` (None: any active location). For an order that already holds units
    of the product (a cart edit), the new units are added to its hold. Answered with the
    allocation taken, or with the units available (an int) when short. Keyword-only, so the
    flag is always named; that costs nothing (msgspec matches keyword names by identity).

    Only a product with rules reads the rest: ``customer`` (the order's, counted by a
    ``per_customer`` rule), ``line`` (the order's units of the product once taken, checked
    against ``per_order``; 0 means ``qty``) and ``retake`` (the order takes back units it held
    before, a late confirm: the window and ``per_order`` were checked when it was placed, only
    ``per_customer`` is checked and counted again)."""

    order_id: str
    qty: int
    hold: bool
    where: Where = None
    customer: str | None = None
    line: int = 0
    retake: bool = False


class GiveBack(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Undo a Take that succeeded for an order that could not go ahead (another line was
    short): ``allocation`` is what that Take answered."""

    order_id: str
    allocation: dict[str, int]
    hold: bool


class Confirm(msgspec.Struct, frozen=True, gc=False):
    """Turn the order's hold into a sale: the units leave on-hand where they were held."""

    order_id: str


class Release(msgspec.Struct, frozen=True, gc=False):
    """Drop the order's hold (cancelled or expired), or only ``part`` of it (a cart edit that
    shrank a line): the units become available."""

    order_id: str
    part: dict[str, int] | None = None


class Return(msgspec.Struct, frozen=True, gc=False):
    """Units of a sold order came back (a return, whole or partial): with ``restock`` they go
    back on hand where they came from (``allocation``); without, they are written off and no
    stock moves (the message still reaches the actor, so what it counts per order sees it)."""

    order_id: str
    allocation: dict[str, int]
    restock: bool = True


class SetStock(msgspec.Struct, frozen=True, gc=False):
    """Overwrite on-hand at ``location`` (a stock count); refused below what is reserved
    there."""

    on_hand: int
    location: str = DEFAULT_LOCATION


class Adjust(msgspec.Struct, frozen=True, gc=False):
    """Move on-hand at ``location`` by ``delta``; refused if it would fall below what is
    reserved there."""

    delta: int
    reason: str
    location: str = DEFAULT_LOCATION


class Transfer(msgspec.Struct, frozen=True, gc=False):
    """Move ``qty`` units on hand from ``source`` to ``destination``; refused (OutOfStock)
    when ``source`` has fewer available (on hand and not reserved)."""

    qty: int
    source: str
    destination: str
    reason: str


class SetRules(msgspec.Struct, frozen=True, gc=False):
    """Replace the product's rules (checked already; ``rules.empty``: none). Counts under
    ``per_customer`` restart from zero when its value changes."""

    rules: ProductRules


class Read(msgspec.Struct, frozen=True, gc=False):
    """Answer the current StockLevel (over ``where``'s locations only, for a channel's view),
    ordered after every change already in the mailbox."""

    where: Where = None


class ReadLocations(msgspec.Struct, frozen=True, gc=False):
    """Answer the product's LocationLevel at every location that ever had its stock."""


Command = (
    Take
    | GiveBack
    | Confirm
    | Release
    | Return
    | SetStock
    | Adjust
    | Transfer
    | SetRules
    | Read
    | ReadLocations
)
