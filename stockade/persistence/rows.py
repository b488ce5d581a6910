"""What a batch writes to a store, worked out once for every store (pure, no I/O).

A batch becomes: the movements (one row per (sku, location) an event moves, keyed by ``(sku,
seq, location)`` so a replayed batch cannot double one), each (sku, location)'s summed deltas (a
stock row's final values once per batch), each order's final snapshot (a new order inserted
once, with its last state; an older one updated once), the idempotency-key uses, and the
locations and channels as last set. The SQL stores and the memory store all apply this.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stockade.engine.events import (
    Adjusted,
    ChannelSet,
    KeyUsed,
    LocationSet,
    OrderEvent,
    OrderPlaced,
    OrderReturned,
    Transferred,
    movement_kind,
    movements,
)
from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.models import Channel, KeyUse, Location, Movement, Order
from stockade.engine.orders import from_timestamp
from stockade.errors import CorruptStore
from stockade.persistence.journal import Batch

__all__ = [
    "ORDER_COLUMNS",
    "ORDER_WIDTH",
    "BatchRows",
    "KeyRow",
    "MovementRow",
    "OrderRow",
    "batch_rows",
    "key_from_row",
    "key_row",
    "order_from_row",
    "order_row",
    "channel_from_row",
    "channel_row",
    "location_from_row",
    "movement_from_row",
]

_encoder = msgspec.json.Encoder()
_lines_decoder = msgspec.json.Decoder(dict[str, int])
_allocations_decoder = msgspec.json.Decoder(dict[str, dict[str, int]])
_list_decoder = msgspec.json.Decoder(list[str])
_fingerprint_decoder = msgspec.json.Decoder(dict[str, int] | float)

#: The ``orders`` columns, in table order.
ORDER_COLUMNS = (
    "id, status, lines, created_at, expires_at, idempotency_key, allocations, channel, location, "
    "returned, written_off"
)
#: How many columns :data:`ORDER_COLUMNS` names.
ORDER_WIDTH = 11
OrderRow = tuple[
    str, str, str, float, float | None, str | None, str, str | None, str | None,
    str | None, str | None,
]  # fmt: skip
#: The ``idempotency_keys`` columns: key, kind, order_id, fingerprint (JSON), at.
KeyRow = tuple[str, str, str, str, float]
MovementRow = tuple[int, str, str, str, str | None, int, int, str | None, float]


class BatchRows(msgspec.Struct, gc=False):
    first_seq: int
    last_seq: int
    movements: list[MovementRow]
    #: (sku, location, d_on_hand, d_reserved)
    stock_deltas: list[tuple[str, str, int, int]]
    new_orders: list[OrderRow]
    updated_orders: list[OrderRow]
    keys: list[KeyRow]
    locations: list[Location]
    channels: list[Channel]


def batch_rows(batch: Batch) -> BatchRows:
    moves: list[MovementRow] = []
    deltas: dict[tuple[str, str], list[int]] = {}
    placed: dict[str, Order] = {}
    updated: dict[str, Order] = {}
    keys: dict[str, KeyRow] = {}
    locations: dict[str, Location] = {}
    channels: dict[str, Channel] = {}
    seq = batch.first_seq
    for event in batch.events:
        kind = movement_kind(event)
        reason = event.reason if type(event) is Adjusted or type(event) is Transferred else None
        for sku, location, order_id, d_on_hand, d_reserved in movements(event):
            moves.append(
                (seq, sku, location, kind, order_id, d_on_hand, d_reserved, reason, event.at)
            )
            if type(event) is OrderReturned and not event.restock:
                continue  # a write-off: recorded, no stock moves
            total = deltas.get((sku, location))
            if total is None:
                deltas[sku, location] = [d_on_hand, d_reserved]
            else:
                total[0] += d_on_hand
                total[1] += d_reserved
        if isinstance(event, OrderEvent):
            order = event.order
            if type(event) is OrderPlaced:
                placed[order.id] = order
                if order.idempotency_key is not None:
                    use = KeyUse(order.idempotency_key, "place", order.id, order.lines, event.at)
                    keys[use.key] = key_row(use)
            elif order.id in placed:
                placed[order.id] = order
            else:
                updated[order.id] = order
        elif type(event) is KeyUsed:
            keys[event.use.key] = key_row(event.use)
        elif type(event) is LocationSet:
            locations[event.location.id] = event.location
        elif type(event) is ChannelSet:
            channels[event.channel.id] = event.channel
        seq += 1
    return BatchRows(
        batch.first_seq,
        batch.last_seq,
        moves,
        [(sku, location, d[0], d[1]) for (sku, location), d in deltas.items()],
        [order_row(order) for order in placed.values()],
        [order_row(order) for order in updated.values()],
        list(keys.values()),
        list(locations.values()),
        list(channels.values()),
    )


def order_row(order: Order) -> OrderRow:
    return (
        order.id,
        order.status,
        _encoder.encode(order.lines).decode(),
        order.created_at.timestamp(),
        None if order.expires_at is None else order.expires_at.timestamp(),
        order.idempotency_key,
        _encoder.encode(order.allocations).decode(),
        order.channel,
        order.location,
        _encoder.encode(order.returned).decode() if order.returned else None,
        _encoder.encode(order.written_off).decode() if order.written_off else None,
    )


def order_from_row(row: Any) -> Order:
    """An Order from a row of :data:`ORDER_COLUMNS`. A row written before locations existed
    has no allocations (NULL): all its units were at ``default``; one from before returns has
    nothing returned (NULL, as for an order nothing came back from). Raises CorruptStore for a
    row that cannot be an order (lines that are not ``{sku: qty}`` JSON, a time that is not a
    number)."""
    (order_id, status, lines, created_at, expires_at, key, allocations, channel, location,
     returned, written_off) = row  # fmt: skip
    try:
        decoded = _lines_decoder.decode(lines)
        return Order(
            order_id,
            status,
            decoded,
            from_timestamp(created_at),
            None if expires_at is None else from_timestamp(expires_at),
            key,
            (
                {sku: {DEFAULT_LOCATION: qty} for sku, qty in decoded.items()}
                if allocations is None
                else _allocations_decoder.decode(allocations)
            ),
            channel,
            location,
            {} if returned is None else _lines_decoder.decode(returned),
            {} if written_off is None else _lines_decoder.decode(written_off),
        )
    except (msgspec.DecodeError, TypeError, ValueError, OverflowError) as exc:
        raise CorruptStore(f"order {order_id!r} cannot be read back: {exc}") from exc


def key_row(use: KeyUse) -> KeyRow:
    return (use.key, use.kind, use.order_id, _encoder.encode(use.fingerprint).decode(), use.at)


def key_from_row(row: Any) -> KeyUse:
    key, kind, order_id, fingerprint, at = row
    return KeyUse(key, kind, order_id, _fingerprint_decoder.decode(fingerprint), at)


def location_from_row(row: Any) -> Location:
    location_id, name, priority, active = row
    return Location(location_id, name, priority, bool(active))


def channel_from_row(row: Any) -> Channel:
    channel_id, locations = row
    return Channel(channel_id, _list_decoder.decode(locations))


def channel_row(channel: Channel) -> tuple[str, str]:
    return channel.id, _encoder.encode(channel.locations).decode()


def movement_from_row(row: Any) -> Movement:
    return Movement(*row)
