"""Commands a product actor accepts: imperative, one per kind of change or read."""

from __future__ import annotations

import msgspec

__all__ = [
    "Adjust",
    "Command",
    "Confirm",
    "GiveBack",
    "Read",
    "Release",
    "Return",
    "SetStock",
    "Take",
]


class Take(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Take ``qty`` units for an order being placed: held (``hold``) or sold outright.
    Keyword-only, so the flag is always named; that costs nothing (msgspec matches keyword
    names by identity, and the call is not specialised either way)."""

    order_id: str
    qty: int
    hold: bool


class GiveBack(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """Undo a Take of an order that could not be placed (another line was short)."""

    order_id: str
    qty: int
    hold: bool


class Confirm(msgspec.Struct, frozen=True, gc=False):
    """Turn the order's hold into a sale: the units leave on-hand."""

    order_id: str


class Release(msgspec.Struct, frozen=True, gc=False):
    """Drop the order's hold (cancelled or expired): the units become available."""

    order_id: str


class Return(msgspec.Struct, frozen=True, gc=False):
    """Put ``qty`` units of a cancelled, confirmed order back on hand."""

    order_id: str
    qty: int


class SetStock(msgspec.Struct, frozen=True, gc=False):
    """Overwrite on-hand (a stock count); refused below what is reserved."""

    on_hand: int


class Adjust(msgspec.Struct, frozen=True, gc=False):
    """Move on-hand by ``delta``; refused if it would fall below what is reserved."""

    delta: int
    reason: str


class Read(msgspec.Struct, frozen=True, gc=False):
    """Answer the current StockLevel, ordered after every change already in the mailbox."""


Command = Take | GiveBack | Confirm | Release | Return | SetStock | Adjust | Read
