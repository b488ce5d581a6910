"""What the engine process serves fronts beside the Engine's calls: the store's side of the HTTP
API (:mod:`stockade.protocol.admin`), for fronts that have no store.

* :class:`ServedKeys`: the store's key table with a version, re-read when a front asks and the
  last read is older than ``max_age_s`` (so a key made or revoked by ``stockade keys`` reaches
  every front within ``max_age_s`` plus the fronts' own poll, ~1.5 s), and at once after a
  front's own change (that front sees it on its next request, every other within its poll).
* :class:`FrontServices`: the handlers to give the protocol server and the task to run beside
  the engine: keys, the books check (:func:`~stockade.persistence.audit.check_store` on the
  engine's store), the engine process's metrics (its statistics and its deliveries', in
  :attr:`FrontServices.registry`), and webhooks: their subscriptions and their deliveries,
  by the :class:`~stockade.outbound.service.Outbound` it runs beside the engine.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest

from stockade.api.metrics import EngineCollector
from stockade.engine.engine import Engine
from stockade.engine.models import EngineStatistics
from stockade.errors import EngineClosed
from stockade.outbound.service import Outbound, OutboundCollector
from stockade.outbound.views import (
    SinkPage,
    SinkSaved,
    SinkView,
    WebhookPage,
    WebhookSaved,
    WebhookView,
)
from stockade.outbound.webhooks import DeliveryOptions
from stockade.persistence.audit import check_store
from stockade.persistence.books import BooksReport, Tally
from stockade.persistence.journal import Store
from stockade.persistence.keys import KeyedStore, KeyRecord, KeyTable, MemoryKeys
from stockade.persistence.sinks import SinkStore
from stockade.persistence.webhooks import MemoryWebhooks, WebhookStore
from stockade.protocol.admin import (
    AddKeyCall,
    CheckBooksCall,
    DeleteSinkCall,
    DeleteWebhookCall,
    EngineMetricsCall,
    GetSinkCall,
    GetWebhookCall,
    KeysCall,
    KeyTableState,
    ListSinksCall,
    ListWebhooksCall,
    PutSinkCall,
    PutWebhookCall,
    RevokeKeyCall,
)
from stockade.protocol.calls import CallBase
from stockade.protocol.server import Handler

__all__ = ["KEYS_MAX_AGE_S", "FrontServices", "ServedKeys"]

#: How old the engine process's copy of the key table may be when a front asks for it.
KEYS_MAX_AGE_S = 0.5


class ServedKeys:
    """``table`` served to fronts with a version. Versions start at a random number, so a
    front that held a version of an engine process that has since restarted never mistakes
    the new one's for its own. Every read and write holds one lock, so a re-read can never
    put back a key revoked meanwhile. Every method may raise StoreUnavailable."""

    def __init__(self, table: KeyTable, *, max_age_s: float = KEYS_MAX_AGE_S) -> None:
        self.table = table
        self.max_age_s = max_age_s
        self.version = secrets.randbits(48) + 1
        self._keys: list[KeyRecord] | None = None
        self._read_at = float("-inf")
        self._lock = trio.Lock()

    async def state(self, version: int) -> KeyTableState:
        """The table, or only its version when it is ``version``."""
        async with self._lock:
            if self._keys is None or trio.current_time() - self._read_at >= self.max_age_s:
                await self._reload()
            assert self._keys is not None
            return KeyTableState(self.version, None if version == self.version else self._keys)

    async def add(self, record: KeyRecord) -> None:
        async with self._lock:
            await self.table.add(record)
            await self._reload()

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        async with self._lock:
            record = await self.table.revoke(key_id, at)
            await self._reload()
            return record

    async def _reload(self) -> None:
        keys = await self.table.keys()
        self._read_at = trio.current_time()
        if keys != self._keys:
            self._keys = keys
            self.version += 1


class FrontServices:
    """What the engine process serves fronts beside the engine's calls. Give :meth:`handlers`
    to the protocol server and :meth:`run` to run beside the engine
    (:func:`~stockade.engine_process.main.run_engine`'s ``handlers`` and ``beside``): the
    handlers answer once :meth:`run` has the engine and its store (before that, no connection
    is accepted). Webhooks are delivered as ``delivery`` says."""

    def __init__(self, delivery: DeliveryOptions | None = None) -> None:
        self.delivery = delivery
        self.store: Store | None = None
        self.keys: ServedKeys | None = None
        self.outbound: Outbound | None = None
        self.registry = CollectorRegistry()
        self._statistics: Callable[[], EngineStatistics] | None = None
        self.registry.register(EngineCollector(self._read_statistics))

    def _read_statistics(self) -> EngineStatistics | None:
        return None if self._statistics is None else self._statistics()

    async def run(
        self, engine: Engine, store: Store, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Serve ``engine``'s store's keys, books, metrics and webhooks, and deliver the
        webhooks, until cancelled; then the deliveries save their cursors (see
        :meth:`Outbound.run <stockade.outbound.service.Outbound.run>`) and the key table is
        closed. Raises what reading the subscriptions raises first."""
        table: KeyTable = store.key_table() if isinstance(store, KeyedStore) else MemoryKeys()
        hooks = store.webhook_table() if isinstance(store, WebhookStore) else MemoryWebhooks()
        sinks = store.sink_table() if isinstance(store, SinkStore) else None
        outbound = Outbound(engine, hooks, sinks, options=self.delivery)
        self.store, self.keys, self._statistics = store, ServedKeys(table), engine.statistics
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(outbound.run)
                self.outbound = outbound
                self.registry.register(OutboundCollector(outbound))
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await table.aclose()

    def handlers(self) -> dict[type[CallBase[Any]], Handler]:
        """The handlers of :mod:`stockade.protocol.admin`'s calls."""
        return {
            KeysCall: self._keys_state,
            AddKeyCall: self._add_key,
            RevokeKeyCall: self._revoke_key,
            CheckBooksCall: self._check_books,
            EngineMetricsCall: self._metrics,
            PutWebhookCall: self._put_webhook,
            GetWebhookCall: self._get_webhook,
            ListWebhooksCall: self._list_webhooks,
            DeleteWebhookCall: self._delete_webhook,
            PutSinkCall: self._put_sink,
            GetSinkCall: self._get_sink,
            ListSinksCall: self._list_sinks,
            DeleteSinkCall: self._delete_sink,
        }

    def _delivering(self) -> Outbound:
        if self.outbound is None:
            raise EngineClosed("the engine process is not serving yet")
        return self.outbound

    async def _put_webhook(self, call: PutWebhookCall) -> WebhookSaved:
        return await self._delivering().put_webhook(
            call.webhook_id, call.url, call.types, call.secret, call.batch
        )

    async def _get_webhook(self, call: GetWebhookCall) -> WebhookView | None:
        return await self._delivering().get_webhook(call.webhook_id)

    async def _list_webhooks(self, call: ListWebhooksCall) -> WebhookPage:
        return await self._delivering().list_webhooks()

    async def _delete_webhook(self, call: DeleteWebhookCall) -> WebhookView | None:
        return await self._delivering().delete_webhook(call.webhook_id)

    async def _put_sink(self, call: PutSinkCall) -> SinkSaved:
        return await self._delivering().put_sink(call.sink_id, call.url, call.types)

    async def _get_sink(self, call: GetSinkCall) -> SinkView | None:
        return await self._delivering().get_sink(call.sink_id)

    async def _list_sinks(self, call: ListSinksCall) -> SinkPage:
        return await self._delivering().list_sinks()

    async def _delete_sink(self, call: DeleteSinkCall) -> SinkView | None:
        return await self._delivering().delete_sink(call.sink_id)

    def _served(self) -> ServedKeys:
        if self.keys is None:
            raise EngineClosed("the engine process is not serving yet")
        return self.keys

    async def _keys_state(self, call: KeysCall) -> KeyTableState:
        return await self._served().state(call.version)

    async def _add_key(self, call: AddKeyCall) -> None:
        await self._served().add(call.record)

    async def _revoke_key(self, call: RevokeKeyCall) -> KeyRecord | None:
        return await self._served().revoke(call.key_id, call.at)

    async def _check_books(self, call: CheckBooksCall) -> BooksReport:
        if self.store is None:
            raise EngineClosed("the engine process is not serving yet")
        return await check_store(self.store, Tally(keep=call.keep))

    async def _metrics(self, call: EngineMetricsCall) -> bytes:
        await trio.lowlevel.checkpoint()
        return generate_latest(self.registry)
