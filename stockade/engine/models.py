"""The values the engine hands back to callers: immutable msgspec Structs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = [
    "EVENT_TYPES",
    "Allocations",
    "EngineStatistics",
    "Event",
    "JournalStatistics",
    "KeyUse",
    "Channel",
    "Location",
    "LocationLevel",
    "Movement",
    "Order",
    "OrderStatus",
    "ProductRules",
    "StockLevel",
]

OrderStatus = Literal["reserved", "confirmed", "cancelled", "expired"]

#: Where an order's units come from: ``{sku: {location: qty}}``.
Allocations = dict[str, dict[str, int]]


class StockLevel(msgspec.Struct, frozen=True, gc=False):
    """A product's stock at one instant, summed over its locations: ``on_hand`` and
    ``reserved`` over all of them, ``available`` over the **active** ones only (so with every
    location active, ``available = on_hand - reserved``)."""

    sku: str
    on_hand: int
    reserved: int
    available: int


class LocationLevel(msgspec.Struct, frozen=True, gc=False):
    """A product's stock at one location. ``available`` is ``on_hand - reserved`` while the
    location is active, and 0 while it is not (its units are not offered to new orders)."""

    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int
    active: bool


class Location(msgspec.Struct, frozen=True, gc=False):
    """A warehouse or store. Orders are allocated from active locations in ``(priority, id)``
    order (lower priority first)."""

    id: str
    name: str = ""
    priority: int = 0
    active: bool = True


class Channel(msgspec.Struct, frozen=True, gc=False):
    """A sales channel (a shop, a country site) that sells from ``locations`` only."""

    id: str
    locations: list[str]


class Order(msgspec.Struct, frozen=True, gc=False):
    """A snapshot of an order. The engine replaces, never mutates, its record on each move.

    ``lines`` maps sku to quantity; ``allocations`` maps sku to the units taken at each
    location (confirm, cancel, expiry and returns move exactly those). ``expires_at`` is set
    while a hold exists or existed (``None`` for a direct purchase). ``channel`` and
    ``location`` are what the order was placed with (a cart edit allocates the same way).
    ``returned`` counts the units of each sku that came back (partial returns, or a whole
    cancel of a sold order: then every unit); ``written_off`` counts those of them written
    off rather than put back on hand. Both are empty for an order nothing came back from.
    ``customer`` (the shop's customer id, counted by ``per_customer`` rules), ``reference``
    (the shop's order number) and ``metadata`` (a flat ``{str: str}``) are the shop's own,
    given when the order was placed. Times are UTC.
    """

    id: str
    status: OrderStatus
    lines: dict[str, int]
    created_at: datetime
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    allocations: Allocations = {}
    channel: str | None = None
    location: str | None = None
    returned: dict[str, int] = {}
    written_off: dict[str, int] = {}
    customer: str | None = None
    reference: str | None = None
    metadata: dict[str, str] | None = None


class ProductRules(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A product's rules for a sale (see ``Engine.set_rules``); None is no such rule.

    ``per_order``: most units of the product in one order. ``per_customer``: most units one
    customer holds and has bought of it, counting the reserved and confirmed orders placed
    since ``counting_since`` (when ``per_customer`` last changed; a cancelled, expired or
    returned unit no longer counts). ``opens_at`` / ``closes_at``: orders are taken from
    ``opens_at`` and before ``closes_at`` only. ``low_stock_at``: a ``product.low_stock``
    event when ``available`` falls to it or below. Times are aware datetimes (UTC)."""

    sku: str
    per_order: int | None = None
    per_customer: int | None = None
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    low_stock_at: int | None = None
    counting_since: datetime | None = None

    @property
    def empty(self) -> bool:
        """True when no rule is set."""
        return (
            self.per_order is None
            and self.per_customer is None
            and self.opens_at is None
            and self.closes_at is None
            and self.low_stock_at is None
        )


class Movement(msgspec.Struct, frozen=True, gc=False):
    """One row of a product's movements ledger: what one change did at one location.
    ``seq`` orders the ledger (changes in commit order); ``kind`` is ``set``, ``adjusted``,
    ``transferred``, ``placed``, ``confirmed``, ``cancelled``, ``expired``, ``changed``,
    ``returned`` (units of a sold order back on hand) or ``written_off`` (units of a sold order
    returned and written off: nothing moves, the row records it);
    ``order_id`` names the order for order moves; ``at`` is UNIX seconds."""

    seq: int
    sku: str
    location: str
    kind: str
    order_id: str | None
    d_on_hand: int
    d_reserved: int
    reason: str | None
    at: float


class KeyUse(msgspec.Struct, frozen=True, gc=False):
    """One use of an idempotency key: ``kind`` ("place", "change", "extend", "return" or
    "write_off"), the order, the request's fingerprint (the lines asked for, or the hold in
    seconds) and when (UNIX seconds)."""

    key: str
    kind: str
    order_id: str
    fingerprint: dict[str, int] | float
    at: float


class JournalStatistics(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A snapshot of the journal's counters (see :meth:`stockade.Engine.statistics`)."""

    #: Events appended and not yet committed.
    buffered: int
    #: Batches committed since start.
    batches: int
    #: Events committed since start.
    events_committed: int
    #: Events in the most recent batch.
    last_batch_size: int
    #: Milliseconds spent in successful commits since start.
    commit_ms_total: int
    #: Commits that failed with StoreUnavailable (and were retried).
    store_errors: int
    #: False while the store refuses commits (the journal is retrying).
    healthy: bool
    #: Change-feed events written since start.
    events_written: int = 0


class EngineStatistics(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A snapshot of the engine's counters, from :meth:`stockade.Engine.statistics`.

    The order counters count since start: ``placed`` orders (every line taken),
    ``out_of_stock`` refusals, ``confirmed`` holds, ``cancelled`` orders (releases and
    returns), ``expired`` holds, ``replayed`` answers from an idempotency key, ``changed``
    cart edits, ``extended`` holds and ``extend_refused`` extensions refused at the cap,
    ``transfers`` between locations, ``retired`` finished orders dropped from memory,
    ``returned`` partial returns and ``confirmed_late`` expired holds confirmed late (also
    counted in ``confirmed``). The
    rest is the state at that instant: ``products`` in the catalogue, ``locations``, ``orders``
    in memory, ``scheduled_expiries`` (hold deadlines), ``active_actors`` (products with mail)
    and their ``queued_messages``; ``messages`` and ``passes`` count the dispatcher's work.
    """

    placed: int
    out_of_stock: int
    confirmed: int
    cancelled: int
    expired: int
    replayed: int
    changed: int
    extended: int
    extend_refused: int
    transfers: int
    products: int
    locations: int
    orders: int
    retired: int
    scheduled_expiries: int
    active_actors: int
    queued_messages: int
    messages: int
    passes: int
    journal: JournalStatistics
    returned: int = 0
    confirmed_late: int = 0


#: Every public event type.
EVENT_TYPES = (
    "stock.changed",
    "order.placed",
    "order.changed",
    "order.extended",
    "order.confirmed",
    "order.cancelled",
    "order.expired",
    "order.returned",
    "product.sold_out",
    "product.back_in_stock",
    "product.low_stock",
)


class Event(msgspec.Struct, frozen=True, gc=False):
    """One public event of the change feed. ``seq`` is gap-free per store, in commit order;
    ``type`` is one of :data:`EVENT_TYPES`; ``data`` is the JSON-ready payload: the Order for
    ``order.*``; ``{"location_level", "stock_level"}`` for ``stock.changed`` (the values after
    the commit that changed them); ``{"sku", "stock_level"}`` for ``product.sold_out`` /
    ``product.back_in_stock`` (when ``available`` reaches zero, or leaves it), and for
    ``product.low_stock`` (when ``available`` falls to the product's ``low_stock_at`` or
    below from above it)."""

    seq: int
    type: str
    at: datetime
    data: dict[str, Any]
