"""Change events: the journal's vocabulary, past tense, one per state change.

Every event implies stock *movements*, deltas of ``on_hand`` and ``reserved`` per sku (see
:func:`movements`). The journal stores deltas rather than absolute values on purpose: an order's
takes are journaled together with its ``OrderPlaced`` record, after all its lines were taken, so
they may reach the journal after later changes to the same product. Deltas commute, so the
stored values are still exact; and since a delayed take only ever *removes* availability, every
prefix of the journal is a state without oversell.

Times (``at``) are UNIX seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import msgspec

from stockade.engine.models import Order, OrderStatus

__all__ = [
    "MOVEMENT_KIND",
    "STATUS_AFTER",
    "Adjusted",
    "Event",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderExpired",
    "OrderMoved",
    "OrderPlaced",
    "StockSet",
    "movements",
]


class StockSet(msgspec.Struct, frozen=True, gc=False, tag=True):
    """``set_stock`` created a product or overwrote its on-hand; ``delta`` is the change."""

    sku: str
    on_hand: int
    delta: int
    at: float


class Adjusted(msgspec.Struct, frozen=True, gc=False, tag=True):
    """``adjust_stock`` moved on-hand by ``delta`` (a restock, a count correction, a loss)."""

    sku: str
    delta: int
    reason: str
    at: float


class OrderPlaced(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An order took its lines: as holds (status ``reserved``) or sold (``confirmed``)."""

    order: Order
    at: float


class OrderMoved(msgspec.Struct, frozen=True, gc=False):
    """What the three moves of an existing order share: its id, its lines, and when. Not an
    event itself (it is not in :data:`Event`); its subclasses are."""

    order_id: str
    lines: dict[str, int]
    at: float


class OrderConfirmed(OrderMoved, frozen=True, gc=False, tag=True):
    """A held order was paid: its reserved units left on-hand."""


class OrderCancelled(OrderMoved, frozen=True, gc=False, tag=True, kw_only=True):
    """An order was cancelled: its holds released (``was="reserved"``) or, for a return of a
    confirmed order (``was="confirmed"``), its units put back on hand. ``was`` is passed by
    name."""

    was: Literal["reserved", "confirmed"]


class OrderExpired(OrderMoved, frozen=True, gc=False, tag=True):
    """A hold lapsed at its deadline: its reserved units became available again."""


Event = StockSet | Adjusted | OrderPlaced | OrderConfirmed | OrderCancelled | OrderExpired


#: The movements ledger's name for what each kind of event did.
MOVEMENT_KIND: dict[type, str] = {
    StockSet: "set",
    Adjusted: "adjusted",
    OrderPlaced: "placed",
    OrderConfirmed: "confirmed",
    OrderCancelled: "cancelled",
    OrderExpired: "expired",
}


#: The status an order has after each order-move event.
STATUS_AFTER: dict[type[OrderMoved], OrderStatus] = {
    OrderConfirmed: "confirmed",
    OrderCancelled: "cancelled",
    OrderExpired: "expired",
}


def movements(event: Event) -> Iterator[tuple[str, str | None, int, int]]:
    """Yield ``(sku, order_id, d_on_hand, d_reserved)`` for each product the event moves."""
    match event:
        case StockSet(sku=sku, delta=delta) | Adjusted(sku=sku, delta=delta):
            yield sku, None, delta, 0
        case OrderPlaced(order=order):
            held = order.status == "reserved"
            for sku, qty in order.lines.items():
                yield (sku, order.id, 0, qty) if held else (sku, order.id, -qty, 0)
        case OrderConfirmed(order_id=oid, lines=lines):
            for sku, qty in lines.items():
                yield sku, oid, -qty, -qty
        case OrderCancelled(order_id=oid, lines=lines, was=was):
            for sku, qty in lines.items():
                yield (sku, oid, 0, -qty) if was == "reserved" else (sku, oid, qty, 0)
        case OrderExpired(order_id=oid, lines=lines):
            for sku, qty in lines.items():
                yield sku, oid, 0, -qty
