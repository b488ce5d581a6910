"""The exceptions stockade raises.

Every error a caller can provoke is a :class:`StockadeError`; each one says exactly when it is
raised, and none of them leaves any state changed::

    StockadeError
    ├── OutOfStock            (an order line asks for more than is available; carries shortages)
    ├── UnknownProduct        (a sku that has never been given stock)
    ├── OrderNotFound         (an order id the engine does not know)
    ├── InvalidTransition     (confirming a cancelled or expired order)
    ├── InvalidRequest        (bad input: sku syntax, qty, lines, stock levels; also a ValueError)
    │   └── StockConflict     (a stock change the product's current stock refuses)
    ├── IdempotencyConflict   (a reused idempotency key with different lines)
    ├── Overloaded            (a mailbox or the journal is full: retry later)
    ├── EngineClosed          (the engine is shutting down or has shut down)
    └── StoreInUse            (another process owns the store)

Foreign exceptions (sqlite3, asyncpg) are translated at the store boundary and never escape
through the engine's API.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "EngineClosed",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "OrderNotFound",
    "OutOfStock",
    "Overloaded",
    "StockadeError",
    "StockConflict",
    "StoreInUse",
    "UnknownProduct",
]


class StockadeError(Exception):
    """Base class of every error stockade raises on purpose."""


class OutOfStock(StockadeError):
    """Raised by ``place_order`` when at least one line asks for more than is available.

    Nothing is taken: lines already reserved for the order are given back before this is raised.
    ``shortages`` maps each short sku to ``(requested, available)`` at the moment it was refused.
    """

    def __init__(self, shortages: Mapping[str, tuple[int, int]]) -> None:
        self.shortages: dict[str, tuple[int, int]] = dict(shortages)
        detail = ", ".join(
            f"{sku}: requested {want}, available {have}"
            for sku, (want, have) in sorted(self.shortages.items())
        )
        super().__init__(f"out of stock ({detail})")


class UnknownProduct(StockadeError):
    """Raised when a sku is well formed but has never been given stock with ``set_stock``."""

    def __init__(self, sku: str) -> None:
        self.sku = sku
        super().__init__(f"unknown product {sku!r}")


class OrderNotFound(StockadeError):
    """Raised when an order id is not known to the engine."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id!r} not found")


class InvalidTransition(StockadeError):
    """Raised when an order cannot make the requested move: confirming an order that was
    cancelled or whose hold expired (including a confirm arriving after ``expires_at`` before
    the expiry timer ran). Repeating a move that already happened is not an error."""

    def __init__(self, order_id: str, status: str, action: str) -> None:
        self.order_id = order_id
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} order {order_id!r}: it is {status}")


class InvalidRequest(StockadeError, ValueError):
    """Raised for input that can never succeed as given: a malformed sku, a quantity below 1 or
    above the limit, an empty order, too many or duplicate lines, a negative stock level, a
    bad hold time or idempotency key, or an unsupported database URL; and, as its subclass
    :class:`StockConflict`, for a stock change the product's current stock refuses."""


class StockConflict(InvalidRequest):
    """Raised by ``set_stock`` or ``adjust_stock`` when the change is well formed but the
    product's stock right now refuses it: on-hand would fall below what open holds reserve (or
    below zero), or rise above the largest stock allowed. The same call may succeed once the
    stock has moved (HTTP answers 409, not 422)."""


class IdempotencyConflict(StockadeError):
    """Raised when an idempotency key already names an order with different lines."""

    def __init__(self, key: str, order_id: str) -> None:
        self.key = key
        self.order_id = order_id
        super().__init__(f"idempotency key {key!r} was already used for other lines")


class Overloaded(StockadeError):
    """Raised instead of queueing without bound: a product's mailbox or the journal buffer is
    full (for example while the database is down). Nothing was changed; retry later."""


class EngineClosed(StockadeError):
    """Raised for calls made while the engine is shutting down or after it has shut down."""


class StoreInUse(StockadeError):
    """Raised by ``open_engine`` when another process already owns the store (holds the SQLite
    file's lock). Two processes must never sell the same stock."""
