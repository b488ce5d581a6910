"""stockade: a stock reservation engine that never oversells and never loses an acknowledged
order. See ``open_engine`` to embed it."""

from stockade._open import open_engine
from stockade.embedding.aio import AsyncioEngine, open_asyncio_engine
from stockade.embedding.thread import BlockingEngine, EngineThread, run_in_thread
from stockade.engine.engine import Engine
from stockade.engine.models import (
    EngineStatistics,
    JournalStatistics,
    Order,
    OrderStatus,
    StockLevel,
)
from stockade.errors import (
    CorruptStore,
    EngineClosed,
    IdempotencyConflict,
    IncompatibleStore,
    InvalidRequest,
    InvalidTransition,
    OrderNotFound,
    OutOfStock,
    Overloaded,
    StockadeError,
    StockConflict,
    StoreError,
    StoreInUse,
    StoreLost,
    StoreUnavailable,
    UnknownProduct,
)
from stockade.persistence.memory import MemoryStore

__version__ = "0.1.0"

__all__ = [
    "AsyncioEngine",
    "BlockingEngine",
    "CorruptStore",
    "Engine",
    "EngineClosed",
    "EngineStatistics",
    "EngineThread",
    "IdempotencyConflict",
    "IncompatibleStore",
    "InvalidRequest",
    "InvalidTransition",
    "JournalStatistics",
    "MemoryStore",
    "Order",
    "OrderNotFound",
    "OrderStatus",
    "OutOfStock",
    "Overloaded",
    "StockConflict",
    "StockLevel",
    "StockadeError",
    "StoreError",
    "StoreInUse",
    "StoreLost",
    "StoreUnavailable",
    "UnknownProduct",
    "open_asyncio_engine",
    "open_engine",
    "run_in_thread",
]
