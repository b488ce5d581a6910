"""A store in memory: what a database would hold, kept in this process (tests, benches).

:class:`StoreState` applies committed events the way every store must: products' current values
from the movements' deltas, orders by id, and optionally the append-only movements ledger.
"""

from __future__ import annotations

import msgspec
import trio

from stockade.engine.events import (
    MOVEMENT_KIND,
    STATUS_AFTER,
    Event,
    OrderPlaced,
    movements,
)
from stockade.engine.models import Order
from stockade.persistence.journal import Batch, Snapshot
from stockade.persistence.keys import MemoryKeys

__all__ = ["MemoryStore", "Movement", "StoreState"]


class Movement(msgspec.Struct, frozen=True, gc=False):
    """One row of the movements ledger."""

    seq: int
    sku: str
    order_id: str | None
    kind: str
    d_on_hand: int
    d_reserved: int
    at: float


class StoreState:
    """Products, orders and (if ``keep_movements``) the movements, as events left them."""

    def __init__(self, *, keep_movements: bool = False) -> None:
        self.products: dict[str, tuple[int, int]] = {}
        self.orders: dict[str, Order] = {}
        self.key_times: dict[str, float] = {}
        self.movements: list[Movement] | None = [] if keep_movements else None
        self.last_seq = 0

    def apply(self, event: Event, seq: int) -> None:
        products = self.products
        kind = MOVEMENT_KIND[type(event)]
        for sku, order_id, d_on_hand, d_reserved in movements(event):
            on_hand, reserved = products.get(sku, (0, 0))
            products[sku] = (on_hand + d_on_hand, reserved + d_reserved)
            if self.movements is not None:
                self.movements.append(
                    Movement(seq, sku, order_id, kind, d_on_hand, d_reserved, event.at)
                )
        if type(event) is OrderPlaced:
            order = event.order
            self.orders[order.id] = order
            if order.idempotency_key is not None:
                self.key_times[order.id] = event.at
        elif type(event) in STATUS_AFTER:
            order_id = event.order_id  # type: ignore[union-attr]
            self.orders[order_id] = msgspec.structs.replace(
                self.orders[order_id], status=STATUS_AFTER[type(event)]
            )
        self.last_seq = seq

    def apply_batch(self, batch: Batch) -> None:
        if batch.last_seq <= self.last_seq:
            return  # already applied: a retried commit must not double a movement
        if batch.first_seq != self.last_seq + 1:
            raise RuntimeError(f"batch {batch.first_seq} does not follow {self.last_seq}")
        for offset, event in enumerate(batch.events):
            self.apply(event, batch.first_seq + offset)

    def snapshot(self) -> Snapshot:
        return Snapshot(
            dict(self.products), list(self.orders.values()), dict(self.key_times), self.last_seq
        )


class MemoryStore:
    """Keeps committed state in this process. Reusable across engines in one process, so a
    second ``open_engine(store=...)`` starts from what the first committed, and keeps the
    API keys a server made (``key_table()``).

    With ``keep_state=False`` (what ``open_engine(None)`` uses) it keeps nothing and only counts
    the events: the engine itself already holds the state, and copying it would only slow a
    store that cannot survive the process anyway.
    """

    def __init__(self, *, keep_state: bool = True, keep_movements: bool = False) -> None:
        self.state = StoreState(keep_movements=keep_movements)
        self.keep_state = keep_state
        self.keys = MemoryKeys()

    def key_table(self) -> MemoryKeys:
        """The store's API keys (kept whatever ``keep_state`` says: a handful of rows)."""
        return self.keys

    async def migrate(self) -> None:
        await trio.lowlevel.checkpoint()  # nothing to migrate in memory

    async def load(self) -> Snapshot:
        await trio.lowlevel.checkpoint()
        return self.state.snapshot()

    async def commit(self, batch: Batch) -> None:
        if self.keep_state:
            self.state.apply_batch(batch)
        else:
            self.state.last_seq = batch.last_seq
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
