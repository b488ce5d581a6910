"""What a batch writes to an SQL store, worked out once for every dialect (pure, no I/O).

A batch becomes: the movements (one row per sku an event moves, keyed by ``(seq, sku)`` so a
replayed batch cannot double one), each product's summed deltas (a product's final values once
per batch), and each order's final state (a new order inserted once, with its last status;
an older order's status updated once).
"""

from __future__ import annotations

from typing import Any

import msgspec

from stockade.engine.events import (
    MOVEMENT_KIND,
    STATUS_AFTER,
    Adjusted,
    OrderPlaced,
    movements,
)
from stockade.engine.models import Order
from stockade.engine.orders import from_timestamp
from stockade.errors import CorruptStore
from stockade.persistence.journal import Batch

__all__ = ["BatchRows", "batch_rows", "order_from_row"]

_lines_encoder = msgspec.json.Encoder()
_lines_decoder = msgspec.json.Decoder(dict[str, int])


class BatchRows(msgspec.Struct, gc=False):
    first_seq: int
    last_seq: int
    movements: list[tuple[int, str, str | None, str, int, int, str | None, float]]
    product_deltas: list[tuple[str, int, int]]
    new_orders: list[tuple[str, str, str, float, float | None, str | None]]
    status_updates: list[tuple[str, str]]


def batch_rows(batch: Batch) -> BatchRows:
    moves: list[tuple[int, str, str | None, str, int, int, str | None, float]] = []
    deltas: dict[str, list[int]] = {}
    placed: dict[str, Order] = {}
    status: dict[str, str] = {}
    seq = batch.first_seq
    for event in batch.events:
        kind = MOVEMENT_KIND[type(event)]
        reason = event.reason if type(event) is Adjusted else None
        for sku, order_id, d_on_hand, d_reserved in movements(event):
            moves.append((seq, sku, order_id, kind, d_on_hand, d_reserved, reason, event.at))
            total = deltas.get(sku)
            if total is None:
                deltas[sku] = [d_on_hand, d_reserved]
            else:
                total[0] += d_on_hand
                total[1] += d_reserved
        if type(event) is OrderPlaced:
            placed[event.order.id] = event.order
        elif type(event) in STATUS_AFTER:
            order_id = event.order_id  # type: ignore[union-attr]
            if order_id in placed:
                placed[order_id] = msgspec.structs.replace(
                    placed[order_id], status=STATUS_AFTER[type(event)]
                )
            else:
                status[order_id] = STATUS_AFTER[type(event)]
        seq += 1
    return BatchRows(
        batch.first_seq,
        batch.last_seq,
        moves,
        [(sku, d[0], d[1]) for sku, d in deltas.items()],
        [_order_row(order) for order in placed.values()],
        list(status.items()),
    )


def _order_row(order: Order) -> tuple[str, str, str, float, float | None, str | None]:
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
