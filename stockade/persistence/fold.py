"""A batch of events folded into what it changes, once, for every store (pure, no I/O).

Every store keeps the same three things: the append-only movements ledger (one row per sku an
event moves, keyed by ``(seq, sku)`` so that a replayed batch cannot double one), each
product's current values (moved once per batch, by the sum of its deltas), and each order's
latest state (an order placed in the batch, with its status at the end of the batch; an
older order's new status). :func:`fold_batch` works these out; the memory store applies them
to its dicts, and the SQL stores write them as rows (:mod:`stockade.persistence.rows`).
"""

from __future__ import annotations

import msgspec

from stockade.engine.events import (
    MOVEMENT_KIND,
    STATUS_AFTER,
    Adjusted,
    OrderMoved,
    OrderPlaced,
    movements,
)
from stockade.engine.models import Order, OrderStatus
from stockade.persistence.journal import Batch

__all__ = ["BatchEffect", "MovementRow", "fold_batch"]

#: One row of the movements ledger:
#: ``(seq, sku, order_id, kind, d_on_hand, d_reserved, reason, at)``.
MovementRow = tuple[int, str, str | None, str, int, int, str | None, float]

_replace = msgspec.structs.replace


class BatchEffect(msgspec.Struct, gc=False):
    """What one batch changes.

    ``movements`` are its movement rows in event order; ``product_deltas`` maps each sku it
    moves to ``[d_on_hand, d_reserved]`` summed over the batch; ``new_orders`` holds the orders
    placed in the batch, in their status at its end; ``status_updates`` maps each older order
    the batch moved to its status at the end.
    """

    first_seq: int
    last_seq: int
    movements: list[MovementRow]
    product_deltas: dict[str, list[int]]
    new_orders: dict[str, Order]
    status_updates: dict[str, OrderStatus]


def fold_batch(batch: Batch) -> BatchEffect:
    """Fold ``batch``'s events, numbered from ``batch.first_seq``, into their effect."""
    moves: list[MovementRow] = []
    deltas: dict[str, list[int]] = {}
    placed: dict[str, Order] = {}
    status: dict[str, OrderStatus] = {}
    seq = batch.first_seq
    for event in batch.events:
        kind = MOVEMENT_KIND[type(event)]
        reason = event.reason if type(event) is Adjusted else None
        at = event.at
        for sku, order_id, d_on_hand, d_reserved in movements(event):
            moves.append((seq, sku, order_id, kind, d_on_hand, d_reserved, reason, at))
            total = deltas.get(sku)
            if total is None:
                deltas[sku] = [d_on_hand, d_reserved]
            else:
                total[0] += d_on_hand
                total[1] += d_reserved
        if type(event) is OrderPlaced:
            placed[event.order.id] = event.order
        elif isinstance(event, OrderMoved):
            after = STATUS_AFTER[type(event)]
            order_id = event.order_id
            if order_id in placed:
                placed[order_id] = _replace(placed[order_id], status=after)
            else:
                status[order_id] = after
        seq += 1
    return BatchEffect(batch.first_seq, batch.last_seq, moves, deltas, placed, status)
