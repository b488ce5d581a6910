"""The change feed's outbox: the public events a committed batch yields, worked out without I/O.

A store calls :func:`feed_events` inside the transaction that commits the batch, with the stock
rows of every product the batch touched as they are *after* it, and writes the events in that
same transaction. So an event exists exactly when its change committed. The events come as the
rows the store writes (:data:`~stockade.engine.feed.EventRow`, the payload encoded once,
straight from the Order for ``order.*``); the journal hands the same rows to the feed's hub.

Per batch: one ``order.*`` event per order move, in journal order (a return that brings back an
order's last units is ``order.returned`` then ``order.cancelled``); then one ``stock.changed``
per (sku, location) the batch moved, with the values after the commit (a batch is a commit:
changes committed together are reported together, which also coalesces a hot product's
thousands of moves per second into one event per commit); then, for each product whose
``available`` moved, ``product.low_stock`` when it fell to its ``low_stock_at`` rule or below
from above it, and ``product.sold_out`` / ``product.back_in_stock`` when it reached zero or
left it. Deactivating or reactivating a location moves no unit but changes ``available``:
every product stocked there gets a ``stock.changed`` for that location (and low-stock /
sold-out / back-in-stock as it crosses a line), so feeds, webhooks and product streams show
the new figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from stockade.engine.changes import (
    Change,
    OrderCancelled,
    OrderChanged,
    OrderConfirmed,
    OrderExpired,
    OrderExtended,
    OrderPlaced,
    OrderReturned,
)
from stockade.engine.feed import EventRow
from stockade.engine.models import Location, LocationLevel, ProductRules, StockLevel
from stockade.persistence.rows import RulesRow

__all__ = ["feed_events", "flipped", "low_stock_rules", "update_low_stock"]

_ORDER_TYPES: dict[type, str] = {
    OrderPlaced: "order.placed",
    OrderChanged: "order.changed",
    OrderExtended: "order.extended",
    OrderConfirmed: "order.confirmed",
    OrderCancelled: "order.cancelled",
    OrderExpired: "order.expired",
    OrderReturned: "order.returned",
}

_encoder = msgspec.json.Encoder()


def feed_events(
    changes: Iterable[Change],
    deltas: Iterable[tuple[str, str, int, int]],
    stock_after: Mapping[str, Mapping[str, tuple[int, int]]],
    inactive: set[str],
    first_seq: int,
    low_stock: Mapping[str, int] | None = None,
    *,
    inactive_before: set[str] | None = None,
) -> list[EventRow]:
    """The public events of one batch, numbered from ``first_seq``, as ``events`` rows.

    ``deltas`` are the batch's summed ``(sku, location, d_on_hand, d_reserved)``;
    ``stock_after`` maps each touched sku to its ``{location: (on_hand, reserved)}`` after the
    batch; ``inactive`` is the set of inactive locations after it, ``inactive_before`` before
    it (None: the same); ``low_stock`` each product's ``low_stock_at`` rule after it (products
    with one only). A location the batch deactivated or reactivated changes what every
    product stocked there has available without moving a unit: ``stock_after`` must then hold
    every sku with a stock row at such a location (:func:`flipped`), and each gets a
    ``stock.changed`` for it (and ``product.low_stock`` / ``sold_out`` / ``back_in_stock`` if
    its available crossed a line).
    """
    before_inactive = inactive if inactive_before is None else inactive_before
    out: list[EventRow] = []
    seq = first_seq
    at = 0.0
    encode = _encoder.encode
    for change in changes:
        at = change.at
        kind = _ORDER_TYPES.get(type(change))
        if kind is not None:
            order = change.order  # type: ignore[union-attr]
            encoded = encode(order).decode()
            out.append((seq, kind, at, None, encoded))
            seq += 1
            if kind == "order.returned" and order.status == "cancelled":  # the last units
                out.append((seq, "order.cancelled", at, None, encoded))
                seq += 1
    moved: dict[tuple[str, str], tuple[int, int]] = {}  # (sku, location) -> its deltas
    for sku, location, d_on_hand, d_reserved in deltas:
        moved[sku, location] = (d_on_hand, d_reserved)
    toggled = inactive ^ before_inactive
    if toggled:  # every product at a location that changed side, whether or not it moved
        for sku in sorted(stock_after):  # in sku order, whatever order the store read
            for location in sorted(stock_after[sku]):
                if location in toggled:
                    moved.setdefault((sku, location), (0, 0))
    for (sku, location), _ in moved.items():
        sites = stock_after.get(sku, {})
        on_hand, reserved = sites.get(location, (0, 0))
        active = location not in inactive
        level = LocationLevel(sku, location, on_hand, reserved,
                              on_hand - reserved if active else 0, active)  # fmt: skip
        data = {"location_level": level, "stock_level": _total(sku, sites, inactive)}
        out.append((seq, "stock.changed", at, sku, encode(data).decode()))
        seq += 1
    for sku in dict.fromkeys(sku for sku, _ in moved):
        sites = stock_after.get(sku, {})
        total = _total(sku, sites, inactive)
        before = 0  # available over the locations active before the batch, before its deltas
        for location, (on_hand, reserved) in sites.items():
            if location not in before_inactive:
                d_on_hand, d_reserved = moved.get((sku, location), (0, 0))
                before += (on_hand - d_on_hand) - (reserved - d_reserved)
        threshold = None if low_stock is None else low_stock.get(sku)
        if threshold is not None and before > threshold >= total.available:
            document: dict[str, object] = {
                "sku": sku, "stock_level": total, "low_stock_at": threshold,
            }  # fmt: skip
            out.append((seq, "product.low_stock", at, sku, encode(document).decode()))
            seq += 1
        if before > 0 and total.available == 0:
            kind = "product.sold_out"
        elif before <= 0 < total.available:
            kind = "product.back_in_stock"
        else:
            continue
        document = {"sku": sku, "stock_level": total}
        out.append((seq, kind, at, sku, encode(document).decode()))
        seq += 1
    return out


def flipped(locations: Iterable[Location], inactive: set[str]) -> set[str]:
    """The ids among ``locations`` (a batch's location rows, in order) whose active side
    differs from ``inactive`` (the inactive set before the batch) once the batch is applied."""
    after = set(inactive)
    for location in locations:
        if location.active:
            after.discard(location.id)
        else:
            after.add(location.id)
    return after ^ inactive


def _total(sku: str, sites: Mapping[str, tuple[int, int]], inactive: set[str]) -> StockLevel:
    on_hand = reserved = available = 0
    for location, (h, r) in sites.items():
        on_hand += h
        reserved += r
        if location not in inactive:
            available += h - r
    return StockLevel(sku, on_hand, reserved, available)


def low_stock_rules(rules: Iterable[ProductRules]) -> dict[str, int]:
    """Each product's ``low_stock_at`` rule, for :func:`feed_events` (a store keeps this)."""
    return {r.sku: r.low_stock_at for r in rules if r.low_stock_at is not None}


def update_low_stock(low_stock: dict[str, int], rows: Iterable[RulesRow]) -> None:
    """Bring ``low_stock`` up to date with a batch's ``product_rules`` rows."""
    for row in rows:
        sku, threshold = row[0], row[5]
        if threshold is None:
            low_stock.pop(sku, None)
        else:
            low_stock[sku] = threshold
