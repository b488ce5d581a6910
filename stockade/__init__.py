"""stockade: a stock reservation engine that never oversells and never loses an acknowledged
order. See ``open_engine`` to embed it."""

from stockade._open import open_engine
from stockade.engine.engine import Engine
from stockade.engine.models import Order, OrderStatus, StockLevel
from stockade.errors import (
    EngineClosed,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    OrderNotFound,
    OutOfStock,
    Overloaded,
    StockadeError,
    UnknownProduct,
)
from stockade.persistence.memory import MemoryStore

__version__ = "0.1.0"

__all__ = [
    "Engine",
    "EngineClosed",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidTransition",
    "MemoryStore",
    "Order",
    "OrderNotFound",
    "OrderStatus",
    "OutOfStock",
    "Overloaded",
    "StockLevel",
    "StockadeError",
    "UnknownProduct",
    "open_engine",
]
