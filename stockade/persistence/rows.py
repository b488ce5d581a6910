"""What a batch writes to a store, worked out once for every store (pure, no I/O).

A batch becomes: the movements (one row per (sku, location) an event moves, keyed by ``(sku,
seq, location)`` so a replayed batch cannot double one), each (sku, location)'s summed deltas (a
stock row's final values once per batch), each order's final snapshot (a new order inserted
once, with its last state; an older one updated once), the idempotency-key uses, and the
locations and channels as last set. The SQL stores and the memory store all apply this.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from stockade.engine.changes import (
    Adjusted,
    ChannelSet,
    Counted,
    KeyUsed,
    LocationSet,
    OrderCancelled,
    OrderChanged,
    OrderEvent,
    OrderExpired,
    OrderPlaced,
    OrderReturned,
    RulesSet,
    Transferred,
    movement_kind,
    movements,
)
from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.models import Channel, KeyUse, Location, Movement, Order, ProductRules
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
    "RulesRow",
    "batch_rows",
    "key_from_row",
    "key_row",
    "order_from_row",
    "order_row",
    "channel_from_row",
    "channel_row",
    "location_from_row",
    "movement_from_row",
    "rules_from_row",
    "rules_row",
]

_encoder = msgspec.json.Encoder()
_lines_decoder = msgspec.json.Decoder(dict[str, int])
_allocations_decoder = msgspec.json.Decoder(dict[str, dict[str, int]])
_list_decoder = msgspec.json.Decoder(list[str])
_fingerprint_decoder = msgspec.json.Decoder(dict[str, int] | float)
_metadata_decoder = msgspec.json.Decoder(dict[str, str])

#: The ``orders`` columns, in table order.
ORDER_COLUMNS = (
    "id, status, lines, created_at, expires_at, idempotency_key, allocations, channel, location, "
    "returned, written_off, customer, reference, metadata"
)
#: How many columns :data:`ORDER_COLUMNS` names.
ORDER_WIDTH = 14
OrderRow = tuple[
    str, str, str, float, float | None, str | None, str, str | None, str | None,
    str | None, str | None, str | None, str | None, str | None,
]  # fmt: skip
#: The ``product_rules`` columns: sku, per_order, per_customer, opens_at, closes_at,
#: low_stock_at, counting_since (times as UNIX seconds).
RulesRow = tuple[str, int | None, int | None, float | None, float | None, int | None, float | None]
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
    #: products whose rules were replaced: the rows as last set (all None: delete the row)
    rules: list[RulesRow] = []
    #: products whose per_customer counts restarted (rows deleted before ``counts``)
    cleared: list[str] = []
    #: (sku, order_id, customer, units) as last counted; units 0: delete the row
    counts: list[tuple[str, str, str, int]] = []
    #: (sku, order_id, most units): a count row to lower to that (after ``counts``)
    caps: list[tuple[str, str, int]] = []


def batch_rows(batch: Batch) -> BatchRows:
    moves: list[MovementRow] = []
    deltas: dict[tuple[str, str], list[int]] = {}
    placed: dict[str, Order] = {}
    updated: dict[str, Order] = {}
    keys: dict[str, KeyRow] = {}
    locations: dict[str, Location] = {}
    channels: dict[str, Channel] = {}
    rules: dict[str, RulesRow] = {}
    cleared: set[str] = set()
    counts: dict[tuple[str, str], tuple[str, str, str, int]] = {}
    caps: dict[tuple[str, str], int] = {}
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
            if order.customer is not None:  # its counts follow its status in this commit
                _follow_counts(event, counts, caps)
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
        elif type(event) is Counted:
            counts[event.sku, event.order_id] = (
                event.sku,
                event.order_id,
                event.customer,
                event.units,
            )
            caps.pop((event.sku, event.order_id), None)
        elif type(event) is RulesSet:
            sku = event.rules.sku
            rules[sku] = rules_row(event.rules)
            if event.reset:
                cleared.add(sku)
                for pair in [pair for pair in counts if pair[0] == sku]:
                    del counts[pair]
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
        list(rules.values()),
        sorted(cleared),
        list(counts.values()),
        [(sku, order_id, cap) for (sku, order_id), cap in caps.items()],
    )


def _follow_counts(
    event: OrderEvent,
    counts: dict[tuple[str, str], tuple[str, str, str, int]],
    caps: dict[tuple[str, str], int],
) -> None:
    """The per_customer count rows an order event of a customer's order changes, written in
    the same commit as the order (the actor's own Counted follows, later, and agrees): a
    finished order counts nothing any more, and a line that shrank (or had units returned)
    counts at most the units it has left.
    So no crash between the two leaves a count the orders contradict."""
    order = event.order
    customer = order.customer
    assert customer is not None
    if type(event) is OrderCancelled or type(event) is OrderExpired:
        for sku in order.lines:
            counts[sku, order.id] = (sku, order.id, customer, 0)
            caps.pop((sku, order.id), None)
    elif type(event) is OrderReturned:  # what is left of each line counts at most
        for sku in event.moves:
            left = order.lines.get(sku, 0) - order.returned.get(sku, 0)
            if left > 0:
                caps[sku, order.id] = left
            else:
                counts[sku, order.id] = (sku, order.id, customer, 0)
                caps.pop((sku, order.id), None)
    elif type(event) is OrderChanged:
        for sku, moved in event.moves.items():
            if sum(moved.values()) < 0:
                units = order.lines.get(sku, 0)
                if units:
                    caps[sku, order.id] = units
                else:
                    counts[sku, order.id] = (sku, order.id, customer, 0)


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
        order.customer,
        order.reference,
        None if order.metadata is None else _encoder.encode(order.metadata).decode(),
    )


def order_from_row(row: Any) -> Order:
    """An Order from a row of :data:`ORDER_COLUMNS`. A row written before locations existed
    has no allocations (NULL): all its units were at ``default``; one from before returns has
    nothing returned (NULL, as for an order nothing came back from). Raises CorruptStore for a
    row that cannot be an order (lines that are not ``{sku: qty}`` JSON, a time that is not a
    number)."""
    (order_id, status, lines, created_at, expires_at, key, allocations, channel, location,
     returned, written_off, customer, reference, metadata) = row  # fmt: skip
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
            customer,
            reference,
            None if metadata is None else _metadata_decoder.decode(metadata),
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


def rules_row(rules: ProductRules) -> RulesRow:
    def unix(t: datetime | None) -> float | None:
        return None if t is None else t.timestamp()

    return (
        rules.sku, rules.per_order, rules.per_customer, unix(rules.opens_at),
        unix(rules.closes_at), rules.low_stock_at, unix(rules.counting_since),
    )  # fmt: skip


def rules_from_row(row: Any) -> ProductRules:
    sku, per_order, per_customer, opens_at, closes_at, low_stock_at, since = row

    def when(t: float | None) -> datetime | None:
        return None if t is None else from_timestamp(t)

    return ProductRules(
        sku=sku, per_order=per_order, per_customer=per_customer, opens_at=when(opens_at),
        closes_at=when(closes_at), low_stock_at=low_stock_at, counting_since=when(since),
    )  # fmt: skip
