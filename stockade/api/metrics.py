r"""Prometheus metrics: the engine's counters read at scrape time, plus per-request ones.

Each app gets its own ``CollectorRegistry`` (no process-wide state), rendered by prometheus-client
in the text exposition format. Collectors are synchronous and the engine is behind an async port
(:mod:`stockade.api.port`), so a scrape first :meth:`Metrics.refresh`\ es a snapshot of the
engine's statistics and feed head (one call each), which the collectors then read.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stockade.api.port import EnginePort
from stockade.engine.models import EngineStatistics

__all__ = ["Metrics"]

#: EngineStatistics field (``journal.x`` for the journal's) -> (metric name, help, kind)
_ENGINE = {
    "placed": ("stockade_orders_placed", "Orders placed (all lines taken)", "counter"),
    "out_of_stock": ("stockade_orders_out_of_stock", "Orders refused as out of stock", "counter"),
    "replayed": ("stockade_orders_replayed", "Orders answered from an idempotency key", "counter"),
    "confirmed": ("stockade_holds_confirmed", "Holds confirmed", "counter"),
    "cancelled": ("stockade_orders_cancelled", "Orders cancelled (releases, returns)", "counter"),
    "expired": ("stockade_holds_expired", "Holds expired", "counter"),
    "changed": ("stockade_orders_changed", "Held orders whose lines were changed", "counter"),
    "extended": ("stockade_holds_extended", "Holds extended", "counter"),
    "extend_refused": ("stockade_hold_extensions_refused",
                       "Extensions refused: the hold was at its maximum lifetime", "counter"),
    "transfers": ("stockade_transfers", "Stock transfers between locations", "counter"),
    "locations": ("stockade_locations", "Stock locations", "gauge"),
    "orders": ("stockade_orders_in_memory", "Orders kept in memory", "gauge"),
    "retired": ("stockade_orders_retired", "Finished orders dropped from memory", "counter"),
    "journal.events_written": ("stockade_events_written", "Change-feed events written",
                               "counter"),
    "products": ("stockade_products", "Products in the catalogue", "gauge"),
    "scheduled_expiries": ("stockade_holds_scheduled", "Hold deadlines scheduled", "gauge"),
    "active_actors": ("stockade_active_actors", "Product actors with mail", "gauge"),
    "queued_messages": ("stockade_mailbox_depth", "Messages waiting in mailboxes", "gauge"),
    "journal.buffered": ("stockade_journal_queue_depth", "Events not yet committed", "gauge"),
    "journal.batches": ("stockade_journal_batches", "Batches committed", "counter"),
    "journal.last_batch_size": ("stockade_journal_batch_size", "Events in the last batch", "gauge"),
    "journal.commit_ms_total": ("stockade_journal_commit_ms", "Time committing", "counter"),
    "journal.store_errors": ("stockade_store_errors", "Failed commits (retried)", "counter"),
    "journal.healthy": ("stockade_journal_healthy", "1 while the store accepts commits", "gauge"),
}  # fmt: skip
_READ = [(attrgetter(field), *metric) for field, metric in _ENGINE.items()]


class _EngineCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        stats = self.metrics.statistics
        if stats is None:  # not refreshed yet: nothing to say about the engine
            return
        for read, name, doc, kind in _READ:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, doc, value=float(read(stats)))


class Metrics:
    """The registry of one app, over ``engine``'s port. ``statistics`` and ``feed_head`` are
    the snapshot of the last :meth:`refresh` (None before the first)."""

    def __init__(self, engine: EnginePort) -> None:
        self.engine = engine
        self.statistics: EngineStatistics | None = None
        self.feed_head: int | None = None
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(self))
        self.requests = Counter(
            "stockade_http_requests", "HTTP requests by route and status",
            ["route", "status"], registry=self.registry,
        )  # fmt: skip
        self.order_latency = Histogram(
            "stockade_order_latency_seconds", "POST /v1/orders latency by outcome",
            ["outcome"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )  # fmt: skip

    async def refresh(self) -> None:
        """Read the engine's statistics and feed head for the next scrape. Cancellable; a
        remote engine's errors propagate (the snapshot is then left as it was)."""
        statistics = await self.engine.statistics()
        self.feed_head = await self.engine.feed_head()
        self.statistics = statistics

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (and time it, for POST /v1/orders)."""
        self.requests.labels(route, str(status)).inc()
        if route == "/v1/orders" and method == "POST":
            outcome = "placed" if status == 201 else str(status)
            self.order_latency.labels(outcome).observe(seconds)
