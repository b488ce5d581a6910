"""What the HTTP app needs from an engine, as async ports: the same app serves an engine in
its own process (:class:`LocalEngine`) or one in another process (a front: the engine protocol's
``RemoteEngine``, design.md §12).

:class:`EnginePort` is ``Engine``'s public API with every method ``async``, including those
that are synchronous on ``Engine`` because they only read memory (``has_product``,
``products``, ``locations``, ``channels``, ``location_exists``, ``channel_exists``,
``statistics``, ``feed_head``): over a connection each is a round trip. ``events`` returns a
:class:`FeedCursor`, an async iterator over the change feed that says how far it read.
Methods, arguments, results and exceptions are ``Engine``'s (see :class:`stockade.Engine`);
a remote port may also raise ``EngineUnavailable`` (the engine cannot be reached, or the call
timed out or was cut off: its outcome is unknown). A route that calls a new engine method adds
it here, with the same signature.

:class:`LocalEngine` adapts an in-process ``Engine`` at no cost on the hot path: each ``async``
method of the port *is* the engine's bound method (``port.place_order is engine.place_order``
would be false only because bound methods are made on access: the call is the same call, with no
wrapper frame); only the synchronous ones get an ``async`` wrapper, which never blocks.

The store's side of the app has ports too: the API keys are a
:class:`~stockade.persistence.keys.KeyTable` (already async; a front's comes over the protocol),
the books check is a :class:`BooksPort` (:class:`LocalBooks` over a store in this process), and
webhook subscriptions and broker sinks an :class:`OutboundPort` (the
:class:`~stockade.outbound.service.Outbound` of the process that owns the engine).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from stockade.engine.engine import Engine
from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.models import (
    Channel,
    EngineStatistics,
    Event,
    Location,
    LocationLevel,
    Movement,
    Order,
    OrderStatus,
    ProductRules,
    StockLevel,
)
from stockade.engine.validation import Lines
from stockade.errors import InvalidRequest
from stockade.outbound.views import (
    SinkPage,
    SinkSaved,
    SinkView,
    WebhookPage,
    WebhookSaved,
    WebhookView,
)
from stockade.persistence.audit import check_store
from stockade.persistence.books import BooksReport, Tally
from stockade.persistence.journal import Store

__all__ = ["BooksPort", "EnginePort", "FeedCursor", "LocalBooks", "LocalEngine", "OutboundPort"]


class FeedCursor(Protocol):
    """The change feed from a position (see ``Engine.events``): ``async for`` it; ``cursor``
    is the last seq read (delivered or filtered out). Each step waits for the next event
    (cancellable)."""

    cursor: int

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event: ...


class EnginePort(Protocol):
    """The engine as the HTTP app calls it: ``Engine``'s methods, every one ``async``."""

    # -- orders and carts ---------------------------------------------------------------------
    async def place_order(
        self, lines: Lines, *, hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None, location: str | None = None,
        channel: str | None = None, customer: str | None = None, reference: str | None = None,
        metadata: Mapping[str, str] | None = None, holder: str | None = None,
        max_open_holds: int | None = None,
    ) -> Order: ...  # fmt: skip

    async def confirm(self, order_id: str, *, late: bool = False) -> Order: ...

    async def cancel(self, order_id: str, *, allow_return: bool = True) -> Order: ...

    async def get_order(self, order_id: str) -> Order: ...

    async def change_order(
        self, order_id: str, lines: Lines, *, idempotency_key: str | None = None
    ) -> Order: ...

    async def extend(
        self, order_id: str, hold_for: timedelta | float, *, idempotency_key: str | None = None
    ) -> Order: ...

    async def return_units(
        self, order_id: str, lines: Lines, *, restock: bool = True,
        idempotency_key: str | None = None,
    ) -> Order: ...  # fmt: skip

    # -- stock, locations, channels -----------------------------------------------------------
    async def set_stock(
        self, sku: str, on_hand: int, location: str = DEFAULT_LOCATION
    ) -> StockLevel: ...

    async def adjust_stock(
        self, sku: str, delta: int, reason: str = "", location: str = DEFAULT_LOCATION
    ) -> StockLevel: ...

    async def transfer(
        self, sku: str, qty: int, source: str, destination: str, reason: str = ""
    ) -> list[LocationLevel]: ...

    async def stock(self, sku: str, channel: str | None = None) -> StockLevel: ...

    async def stock_by_location(self, sku: str) -> list[LocationLevel]: ...

    async def has_product(self, sku: str) -> bool: ...

    async def products(self, after: str | None = None, limit: int = 100) -> list[StockLevel]: ...

    async def set_location(
        self, id: str, name: str = "", priority: int = 0, active: bool = True
    ) -> Location: ...

    async def update_location(
        self, id: str, *, name: str | None = None, priority: int | None = None,
        active: bool | None = None,
    ) -> Location: ...  # fmt: skip

    async def locations(self) -> list[Location]: ...

    async def location_exists(self, location: str) -> bool: ...

    async def set_channel(self, id: str, locations: Iterable[str]) -> Channel: ...

    async def channels(self) -> list[Channel]: ...

    async def channel_exists(self, channel: str) -> bool: ...

    # -- the sale's rules ----------------------------------------------------------------------
    async def set_rules(
        self, sku: str, *, per_order: int | None = None, per_customer: int | None = None,
        opens_at: datetime | None = None, closes_at: datetime | None = None,
        low_stock_at: int | None = None,
    ) -> ProductRules: ...  # fmt: skip

    async def rules(self, sku: str) -> ProductRules: ...

    async def on_sale(self, sku: str) -> bool: ...

    # -- history, the feed, statistics ------------------------------------------------------
    async def list_orders(
        self, status: OrderStatus | None = None, created_after: datetime | None = None,
        created_before: datetime | None = None, after: str | None = None, limit: int = 100,
        customer: str | None = None,
    ) -> list[Order]: ...  # fmt: skip

    async def movements(
        self, sku: str, after: int | None = None, limit: int = 100
    ) -> list[Movement]: ...

    def events(self, after: int = 0, types: Iterable[str] | None = None) -> FeedCursor: ...

    async def event_page(
        self, after: int = 0, limit: int = 100, types: Iterable[str] | None = None
    ) -> tuple[list[Event], int]: ...

    async def feed_head(self) -> int | None: ...

    async def statistics(self) -> EngineStatistics: ...


class LocalEngine:
    """:class:`EnginePort` over ``engine``, an ``Engine`` in this process. The ``async``
    methods are the engine's own bound methods (no wrapper on the hot path); the synchronous
    ones are wrapped and never block."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.place_order = engine.place_order
        self.confirm = engine.confirm
        self.cancel = engine.cancel
        self.get_order = engine.get_order
        self.change_order = engine.change_order
        self.extend = engine.extend
        self.return_units = engine.return_units
        self.set_stock = engine.set_stock
        self.adjust_stock = engine.adjust_stock
        self.transfer = engine.transfer
        self.stock = engine.stock
        self.stock_by_location = engine.stock_by_location
        self.set_location = engine.set_location
        self.update_location = engine.update_location
        self.set_channel = engine.set_channel
        self.list_orders = engine.list_orders
        self.movements = engine.movements
        self.events = engine.events
        self.event_page = engine.event_page
        self.set_rules = engine.set_rules
        self.rules = engine.rules

    async def has_product(self, sku: str) -> bool:
        return self.engine.has_product(sku)

    async def products(self, after: str | None = None, limit: int = 100) -> list[StockLevel]:
        return self.engine.products(after, limit)

    async def locations(self) -> list[Location]:
        return self.engine.locations()

    async def location_exists(self, location: str) -> bool:
        return self.engine.location_exists(location)

    async def channels(self) -> list[Channel]:
        return self.engine.channels()

    async def channel_exists(self, channel: str) -> bool:
        return self.engine.channel_exists(channel)

    async def on_sale(self, sku: str) -> bool:
        return self.engine.on_sale(sku)

    async def feed_head(self) -> int | None:
        return self.engine.feed_head

    async def statistics(self) -> EngineStatistics:
        return self.engine.statistics()


class BooksPort(Protocol):
    """The books check (``GET /v1/admin/check``, design.md §11)."""

    async def check_books(self, keep: int) -> BooksReport:
        """Check the store's books, keeping up to ``keep`` findings of each kind. Raises
        InvalidRequest when there is nothing to check (no store, or one that keeps nothing);
        StoreUnavailable when the store cannot be read."""
        ...


class LocalBooks:
    """:class:`BooksPort` over ``store`` (None: a server without a store, nothing to check),
    read through a reader of its own (:func:`~stockade.persistence.audit.check_store`)."""

    def __init__(self, store: Store | None) -> None:
        self.store = store

    async def check_books(self, keep: int) -> BooksReport:
        if self.store is None:
            raise InvalidRequest("this server keeps no store to check")
        return await check_store(self.store, Tally(keep=keep))


class OutboundPort(Protocol):
    """Webhook subscriptions and broker sinks (``/v1/webhooks``, ``/v1/sinks``, design.md §9,
    §14), kept and delivered by the process that owns the engine: see
    :class:`~stockade.outbound.service.Outbound`, whose methods, results and errors these
    are."""

    async def put_webhook(
        self, webhook_id: str, url: str, types: Sequence[str] | None, secret: str,
        batch: int = 1,
    ) -> WebhookSaved: ...  # fmt: skip

    async def get_webhook(self, webhook_id: str) -> WebhookView | None: ...

    async def list_webhooks(self) -> WebhookPage: ...

    async def delete_webhook(self, webhook_id: str) -> WebhookView | None: ...

    async def put_sink(self, sink_id: str, url: str, types: Sequence[str] | None) -> SinkSaved: ...

    async def get_sink(self, sink_id: str) -> SinkView | None: ...

    async def list_sinks(self) -> SinkPage: ...

    async def delete_sink(self, sink_id: str) -> SinkView | None: ...
