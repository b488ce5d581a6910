"""The values the engine hands back to callers: immutable msgspec Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["EngineStatistics", "JournalStatistics", "Order", "OrderStatus", "StockLevel"]

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


class JournalStatistics(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A snapshot of the journal's counters (see :meth:`stockade.Engine.statistics`)."""

    #: Events appended and not yet committed.
    buffered: int
    #: Batches committed since start.
    batches: int
    #: Events committed since start.
    events_committed: int
    #: Events in the most recent batch.
    last_batch_size: int
    #: Milliseconds spent in successful commits since start.
    commit_ms_total: int
    #: Commits that failed with StoreUnavailable (and were retried).
    store_errors: int
    #: False while the store refuses commits (the journal is retrying).
    healthy: bool


class EngineStatistics(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A snapshot of the engine's counters, from :meth:`stockade.Engine.statistics`.

    The order counters count since start: ``placed`` orders (every line taken),
    ``out_of_stock`` refusals, ``confirmed`` holds, ``cancelled`` orders (releases and
    returns), ``expired`` holds and ``replayed`` answers from an idempotency key. The rest is
    the state at that instant: ``products`` in the catalogue, ``orders`` in memory,
    ``scheduled_expiries`` (hold deadlines), ``active_actors`` (products with mail) and their
    ``queued_messages``; ``messages`` and ``passes`` count the dispatcher's work since start.
    """

    placed: int
    out_of_stock: int
    confirmed: int
    cancelled: int
    expired: int
    replayed: int
    products: int
    orders: int
    scheduled_expiries: int
    active_actors: int
    queued_messages: int
    messages: int
    passes: int
    journal: JournalStatistics
