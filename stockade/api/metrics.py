r"""Prometheus metrics: the engine's counters read at scrape time, plus per-request ones.

Each app gets its own ``CollectorRegistry`` (no process-wide state), rendered by prometheus-client
in the text exposition format. Collectors are synchronous and the engine is behind an async port
(:mod:`stockade.api.port`), so a scrape first :meth:`Metrics.refresh`\ es a snapshot of the
engine's statistics and feed head (one call each), which the collectors then read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from operator import attrgetter

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from stockade.api.port import EnginePort
from stockade.engine.models import EngineStatistics
from stockade.errors import EngineUnavailable

__all__ = ["MULTIPROC_ENV", "EngineCollector", "Metrics"]

#: The environment variable naming the directory of multiprocess mode (prometheus-client's).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
    "returned": ("stockade_returns", "Partial returns of sold orders", "counter"),
    "confirmed_late": ("stockade_holds_confirmed_late",
                       "Expired holds confirmed by a late payment", "counter"),
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


class EngineCollector(Collector):
    """The engine's statistics as series, from ``read`` (None: nothing to say yet)."""

    def __init__(self, read: Callable[[], EngineStatistics | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        stats = self.read()
        if stats is None:
            return
        for read, name, doc, kind in _READ:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, doc, value=float(read(stats)))


class Metrics:
    """The registry of one app, over ``engine``'s port. ``statistics`` and ``feed_head`` are
    the snapshot of the last :meth:`refresh` (None before the first).

    ``remote_series`` (a front's): the engine process's own series as exposition text; the
    engine's statistics are then not rendered here (they are in that text). When the
    environment names a ``PROMETHEUS_MULTIPROC_DIR``, the HTTP series of every process writing
    there are summed (see the module docstring)."""

    def __init__(
        self, engine: EnginePort, *, remote_series: Callable[[], Awaitable[bytes]] | None = None
    ) -> None:
        self.engine = engine
        self.statistics: EngineStatistics | None = None
        self.feed_head: int | None = None
        self.remote_series = remote_series
        self.registry = CollectorRegistry()  # everything this process says
        self._own = CollectorRegistry()  # what it says beside the summed HTTP series
        if remote_series is None:
            self.register(EngineCollector(lambda: self.statistics))
        self.requests = Counter(
            "stockade_http_requests", "HTTP requests by route and status",
            ["route", "status"], registry=self.registry,
        )  # fmt: skip
        self.order_latency = Histogram(
            "stockade_order_latency_seconds", "POST /v1/orders latency by outcome",
            ["outcome"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )  # fmt: skip
        self._summed: CollectorRegistry | None = None
        multiprocess_dir = os.environ.get(MULTIPROC_ENV)
        if multiprocess_dir:
            self._summed = CollectorRegistry()
            MultiProcessCollector(self._summed, path=multiprocess_dir)  # type: ignore[no-untyped-call]

    def register(self, collector: Collector) -> None:
        """Add a collector of this process's series."""
        self.registry.register(collector)
        self._own.register(collector)

    async def refresh(self) -> None:
        """Read the engine's statistics and feed head for the next scrape. Cancellable; a
        remote engine's errors propagate (the snapshot is then left as it was)."""
        statistics = await self.engine.statistics()
        self.feed_head = await self.engine.feed_head()
        self.statistics = statistics

    async def exposition(self) -> bytes:
        """The scrape, in the text exposition format: this process's series (the HTTP ones
        summed over the processes of ``multiprocess_dir``), then the engine process's; without
        the engine's (and with the last snapshot) while a front's engine cannot be reached."""
        with contextlib.suppress(EngineUnavailable):
            await self.refresh()
        if self._summed is None:
            text = generate_latest(self.registry)
        else:
            text = generate_latest(self._summed) + generate_latest(self._own)
        if self.remote_series is not None:
            with contextlib.suppress(EngineUnavailable):  # the front's own series still tell
                text += await self.remote_series()
        return text

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (and time it, for POST /v1/orders)."""
        self.requests.labels(route, str(status)).inc()
        if route == "/v1/orders" and method == "POST":
            outcome = "placed" if status == 201 else str(status)
            self.order_latency.labels(outcome).observe(seconds)
