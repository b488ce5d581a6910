"""The events a server sends out, as one service owned by the process that owns the engine.

:class:`Outbound` runs every delivery of the change feed (webhooks:
:mod:`stockade.outbound.webhooks`; broker sinks: :mod:`stockade.outbound.sinks`) beside the
engine, and is the only way in: the HTTP routes (``/v1/webhooks``, ``/v1/sinks``) call
its async methods, which validate what they are given, change the subscriptions and answer
plain Structs (:mod:`stockade.outbound.views`); a front in another process makes the same calls
over the engine protocol. Nothing outside this package reaches into delivery internals.

Each method that changes or reads subscriptions may block on the store (off the trio thread),
may be cancelled, and raises:

* InvalidRequest: a bad id, URL, secret, batch or list of types (nothing changed);
* FeedGone: a new subscription on a server that keeps no change feed;
* StoreUnavailable: the table cannot be read or written now (nothing changed).

They work whether or not :meth:`Outbound.run` runs; deliveries happen only while it does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stockade.engine.engine import Engine
from stockade.engine.models import EVENT_TYPES
from stockade.engine.orders import from_timestamp
from stockade.engine.validation import check_location_id
from stockade.errors import InvalidRequest
from stockade.outbound.signing import check_url, secret_key
from stockade.outbound.sinks import Sink, SinkOptions, Sinks
from stockade.outbound.sinkurl import mask
from stockade.outbound.views import (
    SinkPage,
    SinkSaved,
    SinkView,
    WebhookPage,
    WebhookSaved,
    WebhookView,
)
from stockade.outbound.webhooks import OUTCOMES, DeliveryOptions, Subscription, Webhooks
from stockade.persistence.sinks import SinkRecord, SinkTable
from stockade.persistence.subscriptions import MemoryTable
from stockade.persistence.webhooks import WebhookTable

__all__ = ["Outbound", "OutboundCollector", "check_types"]


def check_types(types: Sequence[str] | None) -> tuple[str, ...] | None:
    """``types`` as a tuple (None: every type); InvalidRequest if empty, if one is not an event
    type, or if one is named twice."""
    if types is None:
        return None
    kinds = tuple(types)
    if not kinds:
        raise InvalidRequest("types: name at least one event type, or leave it out for all")
    unknown = [kind for kind in kinds if kind not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(f"types: {unknown[0]!r} is not an event type")
    if len(set(kinds)) != len(kinds):
        raise InvalidRequest("types: an event type is named twice")
    return kinds


class Outbound:
    """Deliveries of ``engine``'s change feed, from :meth:`run`: webhook subscriptions kept in
    ``webhook_table`` and delivered as ``options`` says, and broker sinks kept in
    ``sink_table`` (by default in memory) and published as ``sink_options`` says."""

    def __init__(
        self, engine: Engine, webhook_table: WebhookTable, sink_table: SinkTable | None = None,
        *, options: DeliveryOptions | None = None, sink_options: SinkOptions | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.webhooks = Webhooks(engine, webhook_table, options, wall_clock=wall_clock)
        sinks = MemoryTable[SinkRecord]() if sink_table is None else sink_table
        self.sinks = Sinks(engine, sinks, sink_options, wall_clock=wall_clock)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled, then save every cursor (for a bounded time: see
        :meth:`Webhooks.run`). The subscriptions are read before ``task_status.started()``: a
        failure to read them propagates."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.webhooks.run)
            await nursery.start(self.sinks.run)
            task_status.started()

    # -- webhooks -----------------------------------------------------------------------------

    async def put_webhook(
        self, webhook_id: str, url: str, types: Sequence[str] | None, secret: str,
        batch: int = 1,
    ) -> WebhookSaved:  # fmt: skip
        """Create or replace the subscription ``webhook_id``: its events (``types``, None for
        all) POSTed to ``url``, up to ``batch`` in one POST, signed with ``secret`` (see
        :mod:`stockade.outbound.signing`). A new one delivers the events committed from now
        on; a replaced one keeps its cursor, and an attempt in flight is sent again under the
        new settings."""
        check_location_id(webhook_id, what="webhook id")
        check_url(url)
        secret_key(secret)
        kinds = check_types(types)
        subscription, created = await self.webhooks.put(webhook_id, url, kinds, secret, batch)
        return WebhookSaved(self._view(subscription), created)

    async def get_webhook(self, webhook_id: str) -> WebhookView | None:
        """The subscription ``webhook_id``, None if there is none."""
        check_location_id(webhook_id, what="webhook id")
        subscription = await self.webhooks.get(webhook_id)
        return None if subscription is None else self._view(subscription)

    async def list_webhooks(self) -> WebhookPage:
        """Every subscription, in id order."""
        return WebhookPage([self._view(s) for s in await self.webhooks.all()])

    async def delete_webhook(self, webhook_id: str) -> WebhookView | None:
        """Remove the subscription ``webhook_id`` and stop its deliveries (an attempt in flight
        is cut short); what it was, None if there was none."""
        check_location_id(webhook_id, what="webhook id")
        subscription = await self.webhooks.delete(webhook_id)
        return None if subscription is None else self._view(subscription)

    def _view(self, subscription: Subscription) -> WebhookView:
        record = subscription.record
        error_at = subscription.last_error_at
        head = self.engine.feed_head or 0
        return WebhookView(
            record.id, record.url, None if record.types is None else list(record.types),
            subscription.cursor, head, max(head - subscription.cursor, 0), subscription.failing,
            subscription.last_error, None if error_at is None else from_timestamp(error_at),
            from_timestamp(record.created_at), from_timestamp(record.updated_at), record.batch,
        )  # fmt: skip

    # -- sinks --------------------------------------------------------------------------------

    async def put_sink(self, sink_id: str, url: str, types: Sequence[str] | None) -> SinkSaved:
        """Create or replace the sink ``sink_id``: its events (``types``, None for all)
        published to the broker ``url`` names (see :mod:`stockade.outbound.sinkurl`). A new
        one publishes the events committed from now on; a replaced one keeps its cursor."""
        check_location_id(sink_id, what="sink id")
        kinds = check_types(types)
        sink, created = await self.sinks.put(sink_id, url, kinds)
        return SinkSaved(self._sink_view(sink), created)

    async def get_sink(self, sink_id: str) -> SinkView | None:
        """The sink ``sink_id``, None if there is none."""
        check_location_id(sink_id, what="sink id")
        sink = await self.sinks.get(sink_id)
        return None if sink is None else self._sink_view(sink)

    async def list_sinks(self) -> SinkPage:
        """Every sink, in id order."""
        return SinkPage([self._sink_view(s) for s in await self.sinks.all()])

    async def delete_sink(self, sink_id: str) -> SinkView | None:
        """Remove the sink ``sink_id`` and stop its publishing (a batch in flight is cut
        short); what it was, None if there was none."""
        check_location_id(sink_id, what="sink id")
        sink = await self.sinks.delete(sink_id)
        return None if sink is None else self._sink_view(sink)

    def _sink_view(self, sink: Sink) -> SinkView:
        record = sink.record
        error_at = sink.last_error_at
        head = self.engine.feed_head or 0
        return SinkView(
            record.id, mask(record.url), None if record.types is None else list(record.types),
            sink.cursor, head, max(head - sink.cursor, 0), sink.failing, sink.last_error,
            None if error_at is None else from_timestamp(error_at),
            from_timestamp(record.created_at), from_timestamp(record.updated_at),
            sink.delivered, sink.failures,
        )  # fmt: skip

    # -- observing ----------------------------------------------------------------------------

    def cursors(self) -> list[int]:
        """Every delivery's cursor (the seq it has read up to), as known now. Never blocks."""
        hooks, sinks = self.webhooks.subscriptions(), self.sinks.subscriptions()
        return [s.cursor for s in hooks] + [s.cursor for s in sinks]


class OutboundCollector(Collector):
    """The deliveries' metrics, read at scrape time: each webhook's backlog and the attempts
    by outcome; each sink's lag (its backlog), events delivered and batches failed."""

    def __init__(self, outbound: Outbound) -> None:
        self.outbound = outbound

    def collect(self) -> list[Metric]:
        webhooks = self.outbound.webhooks
        backlog = GaugeMetricFamily("stockade_webhook_backlog",
                                    "Events committed after a webhook's cursor",
                                    labels=["webhook"])  # fmt: skip
        for webhook, events in sorted(webhooks.backlogs().items()):
            backlog.add_metric([webhook], float(events))
        deliveries = CounterMetricFamily("stockade_webhook_deliveries",
                                         "Webhook delivery attempts by outcome",
                                         labels=["outcome"])  # fmt: skip
        for outcome in OUTCOMES:
            deliveries.add_metric([outcome], float(webhooks.outcomes[outcome]))
        labels = ["sink"]
        lag = GaugeMetricFamily("stockade_sink_lag", "Events committed after a sink's cursor",
                                labels=labels)  # fmt: skip
        delivered = CounterMetricFamily("stockade_sink_delivered",
                                        "Events a sink's broker acknowledged",
                                        labels=labels)  # fmt: skip
        failures = CounterMetricFamily("stockade_sink_failures", "A sink's failed batches",
                                       labels=labels)  # fmt: skip
        sinks = self.outbound.sinks
        backlogs = sinks.backlogs()
        for sink in sorted(sinks.subscriptions(), key=lambda s: s.id):
            lag.add_metric([sink.id], float(backlogs.get(sink.id, 0)))
            delivered.add_metric([sink.id], float(sink.delivered))
            failures.add_metric([sink.id], float(sink.failures))
        return [backlog, deliveries, lag, delivered, failures]
