"""The events a server sends out, as one service owned by the process that owns the engine.

:class:`Outbound` runs every delivery of the change feed (webhooks: :mod:`stockade.outbound.
webhooks`) beside the engine, and is the only way in: the HTTP routes (``/v1/webhooks``) call
its async methods, which validate what they are given, change the subscriptions and answer
plain Structs (:mod:`stockade.outbound.views`); a front in another process makes the same calls
over the engine protocol. Nothing outside this package reaches into delivery internals.

Each method that changes or reads subscriptions may block on the store (off the trio thread),
may be cancelled, and raises:

* InvalidRequest: a bad id, URL, secret or list of types (nothing changed);
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
from stockade.outbound.views import WebhookPage, WebhookSaved, WebhookView
from stockade.outbound.webhooks import OUTCOMES, DeliveryOptions, Subscription, Webhooks
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
    """Deliveries of ``engine``'s change feed: webhook subscriptions kept in ``webhook_table``
    and delivered as ``options`` says, from :meth:`run`."""

    def __init__(
        self, engine: Engine, webhook_table: WebhookTable, *,
        options: DeliveryOptions | None = None, wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.webhooks = Webhooks(engine, webhook_table, options, wall_clock=wall_clock)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled, then save every cursor (for a bounded time: see
        :meth:`Webhooks.run`). The subscriptions are read before ``task_status.started()``: a
        failure to read them propagates."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.webhooks.run)
            task_status.started()

    # -- webhooks -----------------------------------------------------------------------------

    async def put_webhook(
        self, webhook_id: str, url: str, types: Sequence[str] | None, secret: str
    ) -> WebhookSaved:
        """Create or replace the subscription ``webhook_id``: its events (``types``, None for
        all) POSTed to ``url``, signed with ``secret`` (see :mod:`stockade.outbound.signing`).
        A new one delivers the events committed from now on; a replaced one keeps its cursor,
        and an attempt in flight is sent again under the new settings."""
        check_location_id(webhook_id, what="webhook id")
        check_url(url)
        key = secret_key(secret)
        kinds = check_types(types)
        subscription, created = await self.webhooks.put(webhook_id, url, kinds, key, secret)
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
            from_timestamp(record.created_at), from_timestamp(record.updated_at),
        )  # fmt: skip

    # -- observing ----------------------------------------------------------------------------

    def cursors(self) -> list[int]:
        """Every delivery's cursor (the seq it has read up to), as known now. Never blocks."""
        return [s.cursor for s in self.webhooks.subscriptions()]


class OutboundCollector(Collector):
    """The deliveries' metrics, read at scrape time: each webhook's backlog and the attempts
    by outcome."""

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
        return [backlog, deliveries]
