"""The values the engine hands back to callers: immutable msgspec Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "Allocations",
    "KeyUse",
    "Channel",
    "Location",
    "LocationLevel",
    "Movement",
    "Order",
    "OrderStatus",
    "StockLevel",
]

OrderStatus = Literal["reserved", "confirmed", "cancelled", "expired"]

#: Where an order's units come from: ``{sku: {location: qty}}``.
Allocations = dict[str, dict[str, int]]


class StockLevel(msgspec.Struct, frozen=True, gc=False):
    """A product's stock at one instant, summed over its locations: ``on_hand`` and
    ``reserved`` over all of them, ``available`` over the **active** ones only (so with every
    location active, ``available = on_hand - reserved``)."""

    sku: str
    on_hand: int
    reserved: int
    available: int


class LocationLevel(msgspec.Struct, frozen=True, gc=False):
    """A product's stock at one location. ``available`` is ``on_hand - reserved`` while the
    location is active, and 0 while it is not (its units are not offered to new orders)."""

    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int
    active: bool


class Location(msgspec.Struct, frozen=True, gc=False):
    """A warehouse or store. Orders are allocated from active locations in ``(priority, id)``
    order (lower priority first)."""

    id: str
    name: str = ""
    priority: int = 0
    active: bool = True


class Channel(msgspec.Struct, frozen=True, gc=False):
    """A sales channel (a shop, a country site) that sells from ``locations`` only."""

    id: str
    locations: list[str]


class Order(msgspec.Struct, frozen=True, gc=False):
    """A snapshot of an order. The engine replaces, never mutates, its record on each move.

    ``lines`` maps sku to quantity; ``allocations`` maps sku to the units taken at each
    location (confirm, cancel, expiry and returns move exactly those). ``expires_at`` is set
    while a hold exists or existed (``None`` for a direct purchase). ``channel`` and
    ``location`` are what the order was placed with (a cart edit allocates the same way).
    Times are UTC.
    """

    id: str
    status: OrderStatus
    lines: dict[str, int]
    created_at: datetime
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    allocations: Allocations = {}
    channel: str | None = None
    location: str | None = None


class Movement(msgspec.Struct, frozen=True, gc=False):
    """One row of a product's movements ledger: what one change did at one location.
    ``seq`` orders the ledger (changes in commit order); ``kind`` is ``set``, ``adjusted``,
    ``transferred``, ``placed``, ``confirmed``, ``cancelled``, ``expired`` or ``changed``;
    ``order_id`` names the order for order moves; ``at`` is UNIX seconds."""

    seq: int
    sku: str
    location: str
    kind: str
    order_id: str | None
    d_on_hand: int
    d_reserved: int
    reason: str | None
    at: float


class KeyUse(msgspec.Struct, frozen=True, gc=False):
    """One use of an idempotency key: ``kind`` ("place", "change" or "extend"), the order, the
    request's fingerprint (the lines asked for, or the hold in seconds) and when (UNIX
    seconds)."""

    key: str
    kind: str
    order_id: str
    fingerprint: dict[str, int] | float
    at: float
