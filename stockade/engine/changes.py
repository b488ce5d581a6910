"""Change events: the journal's vocabulary, past tense, one per state change.

Every event implies stock *movements*, deltas of ``on_hand`` and ``reserved`` per (sku,
location) (see :func:`movements`). The journal stores deltas rather than absolute values on
purpose: an order's takes are journaled together with its ``OrderPlaced`` record, after all its
lines were taken, so they may reach the journal after later changes to the same product. Deltas
commute, so the stored values are still exact; and since a delayed take only ever *removes*
availability, every prefix of the journal is a state without oversell.

Order events carry the order's snapshot *after* the move, so a store writes the order as it now
is and the change feed can publish it. Times (``at``) are UNIX seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import msgspec

from stockade.engine.models import Channel, KeyUse, Location, Order, ProductRules

__all__ = [
    "MOVEMENT_KIND",
    "Adjusted",
    "ChannelSet",
    "Change",
    "Counted",
    "RulesSet",
    "KeyUsed",
    "Move",
    "LocationSet",
    "OrderCancelled",
    "OrderChanged",
    "OrderConfirmed",
    "OrderEvent",
    "OrderExpired",
    "OrderExtended",
    "OrderPlaced",
    "OrderReturned",
    "StockSet",
    "Transferred",
    "movement_kind",
    "movements",
]


class StockSet(msgspec.Struct, frozen=True, gc=False, tag=True):
    """``set_stock`` created a product or overwrote its on-hand at ``location``; ``delta`` is
    the change."""

    sku: str
    location: str
    on_hand: int
    delta: int
    at: float


class Adjusted(msgspec.Struct, frozen=True, gc=False, tag=True):
    """``adjust_stock`` moved on-hand at ``location`` by ``delta`` (a restock, a count
    correction, a loss)."""

    sku: str
    location: str
    delta: int
    reason: str
    at: float


class Transferred(msgspec.Struct, frozen=True, gc=False, tag=True):
    """``qty`` units of ``sku`` moved on hand from ``source`` to ``destination``."""

    sku: str
    qty: int
    source: str
    destination: str
    reason: str
    at: float


class OrderEvent(msgspec.Struct, frozen=True, gc=False):
    """An order moved; ``order`` is its snapshot after the move."""

    order: Order
    at: float


class OrderPlaced(OrderEvent, frozen=True, gc=False, tag=True):
    """An order took its lines: as holds (status ``reserved``) or sold (``confirmed``)."""


class OrderConfirmed(OrderEvent, frozen=True, gc=False, tag=True):
    """A held order was paid: its reserved units left on-hand. ``late``: the hold had expired,
    and the units (``order.allocations``, taken again when it was paid) left on-hand directly."""

    late: bool = False


class OrderCancelled(OrderEvent, frozen=True, gc=False, tag=True):
    """An order was cancelled: its holds released (``was="reserved"``) or, for a return of a
    confirmed order (``was="confirmed"``), its units put back on hand where they came from:
    ``moves`` (``{sku: {location: units}}``), the units not returned before; None for all of
    its allocations (nothing had come back before)."""

    was: Literal["reserved", "confirmed"] = "reserved"
    moves: dict[str, dict[str, int]] | None = None


class OrderReturned(OrderEvent, frozen=True, gc=False, tag=True):
    """Some units of a sold order came back (a partial return; ``order.status`` is
    ``cancelled`` once every unit has): ``moves`` is ``{sku: {location: units}}``. With
    ``restock`` they went back on hand there; without, they were written off (no stock
    moves, the movements ledger records it)."""

    moves: dict[str, dict[str, int]] = {}
    restock: bool = True


class OrderExpired(OrderEvent, frozen=True, gc=False, tag=True):
    """A hold lapsed at its deadline: its reserved units became available again."""


class OrderChanged(OrderEvent, frozen=True, gc=False, tag=True):
    """A held order's lines were replaced (a cart edit). ``moves`` is what changed in its
    holds, ``{sku: {location: units}}``: positive where units were taken, negative where
    they were given back."""

    moves: dict[str, dict[str, int]] = {}


class OrderExtended(OrderEvent, frozen=True, gc=False, tag=True):
    """A held order's deadline moved later (``order.expires_at``)."""


class KeyUsed(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An idempotency key was used to change or extend an order (a placing key is recorded
    with its ``OrderPlaced``): remembered across restarts for the idempotency window."""

    use: KeyUse
    at: float


class LocationSet(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A location was created or changed (name, priority, active)."""

    location: Location
    at: float


class ChannelSet(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A sales channel was created or changed."""

    channel: Channel
    at: float


class RulesSet(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A product's rules were replaced (``rules.empty``: it has none now). ``reset``: its
    ``per_customer`` changed, so every count under the old one was dropped."""

    rules: ProductRules
    reset: bool
    at: float


class Counted(msgspec.Struct, frozen=True, gc=False, tag=True):
    """``units`` of ``sku`` in order ``order_id`` now count against ``customer``'s
    ``per_customer`` limit (0: none do any more). Journaled by the product's actor in the
    order it decided, so a store's counts are the actor's at every committed prefix."""

    sku: str
    order_id: str
    customer: str
    units: int
    at: float


#: Every change event (the journal's element type).
Change = (
    StockSet
    | Adjusted
    | Transferred
    | OrderPlaced
    | OrderConfirmed
    | OrderCancelled
    | OrderExpired
    | OrderChanged
    | OrderExtended
    | OrderReturned
    | KeyUsed
    | LocationSet
    | ChannelSet
    | RulesSet
    | Counted
)


#: The movements ledger's name for what each kind of event did.
MOVEMENT_KIND: dict[type, str] = {
    StockSet: "set",
    Adjusted: "adjusted",
    Transferred: "transferred",
    OrderPlaced: "placed",
    OrderConfirmed: "confirmed",
    OrderCancelled: "cancelled",
    OrderExpired: "expired",
    OrderChanged: "changed",
    OrderExtended: "extended",
    OrderReturned: "returned",
    KeyUsed: "key",
    LocationSet: "location",
    ChannelSet: "channel",
    RulesSet: "rules",
    Counted: "counted",
}


def movement_kind(event: Change) -> str:
    """The movements ledger's kind for ``event``'s rows: :data:`MOVEMENT_KIND`, and
    ``written_off`` for units returned without restocking."""
    if type(event) is OrderReturned and not event.restock:
        return "written_off"
    return MOVEMENT_KIND[type(event)]


#: One movement: (sku, location, order id, d_on_hand, d_reserved).
Move = tuple[str, str, str | None, int, int]


def movements(event: Change) -> Iterator[Move]:
    """Yield ``(sku, location, order_id, d_on_hand, d_reserved)`` for each (sku, location) the
    event moves (none for events that move no stock)."""
    match event:
        case OrderPlaced(order=order):
            held = order.status == "reserved"
            for sku, allocation in order.allocations.items():
                for location, qty in allocation.items():
                    yield (sku, location, order.id, 0, qty) if held else (
                        sku, location, order.id, -qty, 0)  # fmt: skip
        case OrderConfirmed(order=order, late=True):  # taken again, sold at once
            for sku, allocation in order.allocations.items():
                for location, qty in allocation.items():
                    yield sku, location, order.id, -qty, 0
        case OrderConfirmed(order=order):
            for sku, allocation in order.allocations.items():
                for location, qty in allocation.items():
                    yield sku, location, order.id, -qty, -qty
        case OrderCancelled(order=order, was="confirmed", moves=moves):
            for sku, allocation in (order.allocations if moves is None else moves).items():
                for location, qty in allocation.items():
                    yield sku, location, order.id, qty, 0
        case OrderReturned(order=order, moves=moves, restock=restock):
            for sku, allocation in moves.items():
                for location, qty in allocation.items():
                    yield sku, location, order.id, qty if restock else 0, 0
        case OrderCancelled(order=order) | OrderExpired(order=order):
            for sku, allocation in order.allocations.items():
                for location, qty in allocation.items():
                    yield sku, location, order.id, 0, -qty
        case OrderChanged(order=order, moves=moves):
            for sku, change in moves.items():
                for location, qty in change.items():
                    yield sku, location, order.id, 0, qty
        case (
            StockSet(sku=sku, location=location, delta=delta)
            | Adjusted(sku=sku, location=location, delta=delta)
        ):
            yield sku, location, None, delta, 0
        case Transferred(sku=sku, qty=qty, source=source, destination=destination):
            yield sku, source, None, -qty, 0
            yield sku, destination, None, qty, 0
