"""The app's ports over a remote engine (:class:`~stockade.protocol.client.RemoteEngine`): what
a front hands :func:`~stockade.api.app.create_app` instead of an engine and a store.

* :class:`RemotePort`: the :class:`~stockade.api.port.EnginePort`: the remote engine's own
  methods, bound once (as :class:`~stockade.api.port.LocalEngine` binds an Engine's), and its
  change feed as a :class:`~stockade.api.port.FeedCursor` that stops its subscription when the
  reader is done with it.
* :class:`RemoteKeys`: the :class:`~stockade.persistence.keys.KeyTable`, read from the engine
  process only when it changed (``admin.keys`` answers nothing for the version the front
  already holds), so :class:`~stockade.api.keys.ApiKeys` can poll it every second from every
  front for the price of a ping.
* :class:`RemoteBooks`: the books check, run by the engine process on its store.
* :class:`RemoteOutbound`: webhook subscriptions
  (:class:`~stockade.api.port.OutboundPort`), kept and delivered by the engine process.

Every call may raise EngineUnavailable (see :class:`~stockade.protocol.client.RemoteEngine`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from stockade.engine.models import Event
from stockade.outbound.views import (
    SinkPage,
    SinkSaved,
    SinkView,
    WebhookPage,
    WebhookSaved,
    WebhookView,
)
from stockade.persistence.books import BooksReport
from stockade.persistence.keys import KeyRecord
from stockade.protocol.admin import (
    AddKeyCall,
    CheckBooksCall,
    DeleteSinkCall,
    DeleteWebhookCall,
    EngineMetricsCall,
    GetSinkCall,
    GetWebhookCall,
    KeysCall,
    ListSinksCall,
    ListWebhooksCall,
    PutSinkCall,
    PutWebhookCall,
    RevokeKeyCall,
)
from stockade.protocol.client import RemoteEngine, RemoteEvents

__all__ = [
    "CHECK_TIMEOUT_S",
    "RemoteBooks",
    "RemoteCursor",
    "RemoteKeys",
    "RemoteOutbound",
    "RemotePort",
    "engine_series",
]

#: How long the books check may take on the engine's side (it reads the whole store).
CHECK_TIMEOUT_S = 300.0


class RemoteCursor:
    """A remote subscription to the change feed as a FeedCursor: ``cursor`` is the seq of the
    last event read (``after`` before the first). :meth:`aclose` ends the subscription."""

    def __init__(self, events: RemoteEvents, after: int) -> None:
        self._events = events
        self.cursor = after

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.__anext__()
        self.cursor = event.seq
        return event

    async def aclose(self) -> None:
        """Stop the subscription (never blocks)."""
        await self._events.aclose()


class RemotePort:
    """:class:`~stockade.api.port.EnginePort` over ``remote``."""

    def __init__(self, remote: RemoteEngine) -> None:
        self.remote = remote
        self.place_order = remote.place_order
        self.confirm = remote.confirm
        self.cancel = remote.cancel
        self.get_order = remote.get_order
        self.change_order = remote.change_order
        self.extend = remote.extend
        self.return_units = remote.return_units
        self.set_stock = remote.set_stock
        self.adjust_stock = remote.adjust_stock
        self.transfer = remote.transfer
        self.stock = remote.stock
        self.stock_by_location = remote.stock_by_location
        self.has_product = remote.has_product
        self.products = remote.products
        self.set_location = remote.set_location
        self.update_location = remote.update_location
        self.locations = remote.locations
        self.location_exists = remote.location_exists
        self.set_channel = remote.set_channel
        self.channels = remote.channels
        self.channel_exists = remote.channel_exists
        self.list_orders = remote.list_orders
        self.movements = remote.movements
        self.event_page = remote.event_page
        self.feed_head = remote.feed_head
        self.statistics = remote.statistics
        self.set_rules = remote.set_rules
        self.rules = remote.rules
        self.on_sale = remote.on_sale

    def events(self, after: int = 0, types: Iterable[str] | None = None) -> RemoteCursor:
        return RemoteCursor(self.remote.events(after, types), after)


class RemoteKeys:
    """The engine process's key table, as a :class:`~stockade.persistence.keys.KeyTable`.
    :meth:`keys` answers the copy it holds when the engine says the table has not changed."""

    def __init__(self, remote: RemoteEngine) -> None:
        self.remote = remote
        self._version = 0
        self._keys: list[KeyRecord] = []

    async def schema_version(self) -> int:
        raise NotImplementedError("a front does not migrate the store")

    async def keys(self) -> list[KeyRecord]:
        state = await self.remote.call(KeysCall(self._version))
        if state.keys is not None:
            self._version, self._keys = state.version, state.keys
        return list(self._keys)

    async def add(self, record: KeyRecord) -> None:
        await self.remote.call(AddKeyCall(record))

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        return await self.remote.call(RevokeKeyCall(key_id, at))

    async def aclose(self) -> None:
        """Nothing to close: the link is the remote engine's."""


class RemoteBooks:
    """The books check (:class:`~stockade.api.port.BooksPort`), run by the engine process."""

    def __init__(self, remote: RemoteEngine) -> None:
        self.remote = remote

    async def check_books(self, keep: int) -> BooksReport:
        return await self.remote.call(CheckBooksCall(keep), timeout_s=CHECK_TIMEOUT_S)


class RemoteOutbound:
    """Webhook subscriptions and broker sinks (:class:`~stockade.api.port.OutboundPort`), kept
    and delivered by the engine process: the methods of its
    :class:`~stockade.outbound.service.Outbound`."""

    def __init__(self, remote: RemoteEngine) -> None:
        self.remote = remote

    async def put_webhook(
        self, webhook_id: str, url: str, types: Sequence[str] | None, secret: str,
        batch: int = 1,
    ) -> WebhookSaved:  # fmt: skip
        kinds = None if types is None else list(types)
        return await self.remote.call(PutWebhookCall(webhook_id, url, kinds, secret, batch))

    async def get_webhook(self, webhook_id: str) -> WebhookView | None:
        return await self.remote.call(GetWebhookCall(webhook_id))

    async def list_webhooks(self) -> WebhookPage:
        return await self.remote.call(ListWebhooksCall())

    async def delete_webhook(self, webhook_id: str) -> WebhookView | None:
        return await self.remote.call(DeleteWebhookCall(webhook_id))

    async def put_sink(self, sink_id: str, url: str, types: Sequence[str] | None) -> SinkSaved:
        kinds = None if types is None else list(types)
        return await self.remote.call(PutSinkCall(sink_id, url, kinds))

    async def get_sink(self, sink_id: str) -> SinkView | None:
        return await self.remote.call(GetSinkCall(sink_id))

    async def list_sinks(self) -> SinkPage:
        return await self.remote.call(ListSinksCall())

    async def delete_sink(self, sink_id: str) -> SinkView | None:
        return await self.remote.call(DeleteSinkCall(sink_id))


async def engine_series(remote: RemoteEngine) -> bytes:
    """The engine process's Prometheus series (exposition text)."""
    return await remote.call(EngineMetricsCall())
