"""The values the engine hands back to callers: immutable msgspec Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["Order", "OrderStatus", "StockLevel"]

OrderStatus = Literal["reserved", "confirmed", "cancelled", "expired"]


class StockLevel(msgspec.Struct, frozen=True, gc=False):
    """A product's stock at one instant. ``available = on_hand - reserved``."""

    sku: str
    on_hand: int
    reserved: int
    available: int


class Order(msgspec.Struct, frozen=True, gc=False):
    """A snapshot of an order. The engine replaces, never mutates, its record on each move.

    ``lines`` maps sku to quantity. ``expires_at`` is set while a hold exists or existed
    (``None`` for a direct purchase). Times are UTC.
    """

    id: str
    status: OrderStatus
    lines: dict[str, int]
    created_at: datetime
    expires_at: datetime | None = None
    idempotency_key: str | None = None
