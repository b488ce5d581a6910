"""stockade: a stock reservation engine that never oversells and never loses an acknowledged
order. See ``open_engine`` to embed it."""

from stockade._open import open_engine
from stockade.embedding.aio import AsyncioEngine, open_asyncio_engine
from stockade.embedding.thread import BlockingEngine, EngineThread, run_in_thread
from stockade.engine.engine import Engine
from stockade.engine.models import (
    Channel,
    EngineStatistics,
    Event,
    JournalStatistics,
    Location,
    LocationLevel,
    Movement,
    Order,
    OrderStatus,
    StockLevel,
)
from stockade.errors import (
    CorruptStore,
    EngineClosed,
    EngineRefused,
    EngineUnavailable,
    FeedGone,
    IdempotencyConflict,
    IncompatibleStore,
    InvalidRequest,
    InvalidTransition,
    OrderNotFound,
    OutOfStock,
    Overloaded,
    ReturnConflict,
    StockadeError,
    StockConflict,
    StoreError,
    StoreInUse,
    StoreLost,
    StoreUnavailable,
    TooManyHolds,
    UnknownChannel,
    UnknownLocation,
    UnknownProduct,
)
from stockade.persistence.memory import MemoryStore
from stockade.protocol.client import RemoteEngine, open_remote_engine

__version__ = "0.1.0"

__all__ = [
    "AsyncioEngine",
    "BlockingEngine",
    "Channel",
    "CorruptStore",
    "Engine",
    "EngineClosed",
    "EngineRefused",
    "EngineUnavailable",
    "EngineStatistics",
    "EngineThread",
    "Event",
    "FeedGone",
    "IdempotencyConflict",
    "IncompatibleStore",
    "InvalidRequest",
    "InvalidTransition",
    "JournalStatistics",
    "Location",
    "LocationLevel",
    "MemoryStore",
    "Movement",
    "Order",
    "OrderNotFound",
    "OrderStatus",
    "OutOfStock",
    "Overloaded",
    "RemoteEngine",
    "ReturnConflict",
    "StockConflict",
    "StockLevel",
    "StockadeError",
    "StoreError",
    "StoreInUse",
    "StoreLost",
    "StoreUnavailable",
    "TooManyHolds",
    "UnknownChannel",
    "UnknownLocation",
    "UnknownProduct",
    "open_asyncio_engine",
    "open_engine",
    "open_remote_engine",
    "run_in_thread",
]
