"""The change feed's outbox: the public events a committed batch yields, worked out without I/O.

A store calls :func:`feed_events` inside the transaction that commits the batch, with the stock
rows of every product the batch touched as they are *after* it, and writes the events in that
same transaction. So an event exists exactly when its change committed.

Per batch: one ``order.*`` event per order move, in journal order; then one ``stock.changed``
per (sku, location) the batch moved, with the values after the commit (a batch is a commit:
changes committed together are reported together, which also coalesces a hot product's
thousands of moves per second into one event per commit); then ``product.sold_out`` /
``product.back_in_stock`` for each product whose ``available`` reached zero or left it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from stockade.engine.events import (
    Change,
    OrderCancelled,
    OrderChanged,
    OrderConfirmed,
    OrderExpired,
    OrderExtended,
    OrderPlaced,
)
from stockade.engine.models import Event, LocationLevel, StockLevel
from stockade.engine.orders import from_timestamp

__all__ = ["EventRow", "event_from_row", "event_row", "feed_events"]

_ORDER_TYPES: dict[type, str] = {
    OrderPlaced: "order.placed",
    OrderChanged: "order.changed",
    OrderExtended: "order.extended",
    OrderConfirmed: "order.confirmed",
    OrderCancelled: "order.cancelled",
    OrderExpired: "order.expired",
}

#: An ``events`` row: seq, type, at (UNIX seconds), sku (for product events), data (JSON).
EventRow = tuple[int, str, float, str | None, str]

_encoder = msgspec.json.Encoder()
_data_decoder = msgspec.json.Decoder(dict[str, Any])


def feed_events(
    changes: Iterable[Change],
    deltas: Iterable[tuple[str, str, int, int]],
    stock_after: Mapping[str, Mapping[str, tuple[int, int]]],
    inactive: set[str],
    first_seq: int,
) -> list[Event]:
    """The public events of one batch, numbered from ``first_seq``.

    ``deltas`` are the batch's summed ``(sku, location, d_on_hand, d_reserved)``;
    ``stock_after`` maps each touched sku to its ``{location: (on_hand, reserved)}`` after the
    batch; ``inactive`` is the set of inactive locations after it.
    """
    out: list[Event] = []
    seq = first_seq
    at = 0.0
    for change in changes:
        at = change.at
        kind = _ORDER_TYPES.get(type(change))
        if kind is not None:
            order = change.order  # type: ignore[union-attr]
            out.append(Event(seq, kind, from_timestamp(at), msgspec.to_builtins(order)))
            seq += 1
    when = from_timestamp(at)
    moved: dict[str, int] = {}  # sku -> change of its available over active locations
    for sku, location, d_on_hand, d_reserved in deltas:
        if location not in inactive:
            moved[sku] = moved.get(sku, 0) + d_on_hand - d_reserved
        else:
            moved.setdefault(sku, 0)
        sites = stock_after.get(sku, {})
        on_hand, reserved = sites.get(location, (0, 0))
        active = location not in inactive
        level = LocationLevel(sku, location, on_hand, reserved,
                              on_hand - reserved if active else 0, active)  # fmt: skip
        data = {
            "location_level": msgspec.to_builtins(level),
            "stock_level": msgspec.to_builtins(_total(sku, sites, inactive)),
        }
        out.append(Event(seq, "stock.changed", when, data))
        seq += 1
    for sku, moved_available in moved.items():
        total = _total(sku, stock_after.get(sku, {}), inactive)
        before = total.available - moved_available
        if before > 0 and total.available == 0:
            kind = "product.sold_out"
        elif before <= 0 < total.available:
            kind = "product.back_in_stock"
        else:
            continue
        data = {"sku": sku, "stock_level": msgspec.to_builtins(total)}
        out.append(Event(seq, kind, when, data))
        seq += 1
    return out


def _total(sku: str, sites: Mapping[str, tuple[int, int]], inactive: set[str]) -> StockLevel:
    on_hand = reserved = available = 0
    for location, (h, r) in sites.items():
        on_hand += h
        reserved += r
        if location not in inactive:
            available += h - r
    return StockLevel(sku, on_hand, reserved, available)


def event_row(event: Event) -> EventRow:
    data = event.data
    if event.type == "stock.changed":
        sku = data["stock_level"]["sku"]
    elif event.type.startswith("product."):
        sku = data["sku"]
    else:
        sku = None
    return (event.seq, event.type, event.at.timestamp(), sku, _encoder.encode(data).decode())


def event_from_row(row: Any) -> Event:
    seq, kind, at, _, data = row
    return Event(seq, kind, from_timestamp(at), _data_decoder.decode(data))
