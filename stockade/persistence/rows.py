"""What a batch writes to an SQL store, as rows for every dialect (pure, no I/O).

The batch's effect is worked out by :func:`~stockade.persistence.fold.fold_batch`, the same
fold the memory store applies; this module only shapes it into rows: the movements, each
product's summed deltas, new orders (lines as JSON, times as UNIX seconds) and status updates.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stockade.engine.models import Order
from stockade.engine.orders import from_timestamp
from stockade.errors import CorruptStore
from stockade.persistence.fold import MovementRow, fold_batch
from stockade.persistence.journal import Batch

__all__ = ["BatchRows", "OrderRow", "batch_rows", "order_from_row"]

#: An order as its SQL row: ``(id, status, lines, created_at, expires_at, idempotency_key)``.
OrderRow = tuple[str, str, str, float, float | None, str | None]

_lines_encoder = msgspec.json.Encoder()
_lines_decoder = msgspec.json.Decoder(dict[str, int])


class BatchRows(msgspec.Struct, gc=False):
    """A batch's effect as the rows an SQL store writes in one transaction."""

    first_seq: int
    last_seq: int
    movements: list[MovementRow]
    product_deltas: list[tuple[str, int, int]]
    new_orders: list[OrderRow]
    status_updates: list[tuple[str, str]]


def batch_rows(batch: Batch) -> BatchRows:
    effect = fold_batch(batch)
    return BatchRows(
        effect.first_seq,
        effect.last_seq,
        effect.movements,
        [(sku, d[0], d[1]) for sku, d in effect.product_deltas.items()],
        [_order_row(order) for order in effect.new_orders.values()],
        list(effect.status_updates.items()),
    )


def _order_row(order: Order) -> OrderRow:
    return (
        order.id,
        order.status,
        _lines_encoder.encode(order.lines).decode(),
        order.created_at.timestamp(),
        None if order.expires_at is None else order.expires_at.timestamp(),
        order.idempotency_key,
    )


def order_from_row(row: Any) -> Order:
    """An Order from ``(id, status, lines, created_at, expires_at, idempotency_key)``. Raises
    CorruptStore for a row that cannot be one (lines that are not ``{sku: qty}`` JSON, a time
    that is not a number)."""
    order_id, status, lines, created_at, expires_at, key = row
    try:
        return Order(
            order_id,
            status,
            _lines_decoder.decode(lines),
            from_timestamp(created_at),
            None if expires_at is None else from_timestamp(expires_at),
            key,
        )
    except (msgspec.DecodeError, TypeError, ValueError, OverflowError) as exc:
        raise CorruptStore(f"order {order_id!r} cannot be read back: {exc}") from exc
