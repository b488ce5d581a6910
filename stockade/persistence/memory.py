"""A store in memory: what a database would hold, kept in this process (tests, benches).

:class:`StoreState` applies committed batches the way every store must, through the same fold
as the SQL stores (:func:`~stockade.persistence.fold.fold_batch`): products' current values
from the movements' deltas, orders by id, and optionally the append-only movements ledger. It
refuses what an SQL store's schema would refuse (CorruptStore), and changes nothing then.
"""

from __future__ import annotations

import msgspec
import trio

from stockade.engine.models import Order
from stockade.errors import CorruptStore
from stockade.persistence.fold import BatchEffect, fold_batch
from stockade.persistence.journal import Batch, Snapshot, is_new_batch
from stockade.persistence.keys import MemoryKeys

__all__ = ["MemoryStore", "Movement", "StoreState"]

_replace = msgspec.structs.replace


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
        self.movements: list[Movement] | None = [] if keep_movements else None
        self.last_seq = 0

    def apply_batch(self, batch: Batch) -> None:
        """Apply a committed batch; skip one already applied. Raises CorruptStore, changing
        nothing, for a batch that does not follow, places an order twice, moves an order this
        state does not hold, or leaves a product outside ``0 <= reserved <= on_hand``."""
        if not is_new_batch(batch.first_seq, batch.last_seq, self.last_seq):
            return  # already applied: a retried commit must not double a movement
        effect = fold_batch(batch)
        products = self._products_after(effect)
        orders = self.orders
        for order_id, status in effect.status_updates.items():
            orders[order_id] = _replace(orders[order_id], status=status)
        orders.update(effect.new_orders)
        self.products.update(products)
        if self.movements is not None:
            self.movements.extend(
                Movement(seq, sku, order_id, kind, d_on_hand, d_reserved, at)
                for seq, sku, order_id, kind, d_on_hand, d_reserved, _, at in effect.movements
            )
        self.last_seq = batch.last_seq

    def _products_after(self, effect: BatchEffect) -> dict[str, tuple[int, int]]:
        """The products ``effect`` moves, with their new values, once it is known to be sound
        (every check an SQL store's keys and constraints make)."""
        for order_id in effect.new_orders:
            if order_id in self.orders:
                raise CorruptStore(f"batch {effect.first_seq} places order {order_id!r} again")
        for order_id in effect.status_updates:
            if order_id not in self.orders:
                raise CorruptStore(f"batch {effect.first_seq} moves unknown order {order_id!r}")
        after: dict[str, tuple[int, int]] = {}
        for sku, (d_on_hand, d_reserved) in effect.product_deltas.items():
            on_hand, reserved = self.products.get(sku, (0, 0))
            on_hand += d_on_hand
            reserved += d_reserved
            if not 0 <= reserved <= on_hand:
                raise CorruptStore(
                    f"batch {effect.first_seq} leaves {sku!r} with on_hand {on_hand}, "
                    f"reserved {reserved}"
                )
            after[sku] = (on_hand, reserved)
        return after

    def snapshot(self) -> Snapshot:
        return Snapshot.of(dict(self.products), list(self.orders.values()), self.last_seq)


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
