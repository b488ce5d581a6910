"""The change feed over HTTP (design.md §9): pages, Server-Sent Events, and the server-side
machinery behind them.

* ``GET /v1/events?after=&limit=&types=`` (service or merchant): a page of events after
  ``after`` (0: from the oldest kept), ``{"items", "next_after"}``; ``next_after`` is the seq to
  ask after next (the last looked at, filtered out or not).
* ``GET /v1/events/stream`` (service or merchant): the feed as Server-Sent Events, one message
  per event (``id:`` its seq, ``event:`` its type, ``data:`` its JSON), from ``Last-Event-ID``
  (what a reconnecting ``EventSource`` sends), else ``?after=``, else from now; ``types``
  filters.
* ``GET /v1/products/{sku}/stream`` (anyone): a product's StockLevel, the current one first,
  then as it changes, at most one message per ``product_interval_s`` (the newest).

A position the feed cannot serve (pruned, beyond the newest event, or a server that keeps no
feed) is 410 ``feed-gone`` with ``first`` and ``last``, the oldest and newest seq kept. Streams
are bounded, kept alive, and ended at shutdown: see :mod:`stockade.api.sse`.
:class:`FeedService` holds what a server runs beside its routes for them (the streams, the
product watch): the server starts :meth:`FeedService.run` and calls
:meth:`FeedService.stop_streams` when it stops. Deliveries (webhooks, sinks) are not here: they
belong to the engine's process, see :mod:`stockade.outbound`.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from quart import Blueprint, Response, current_app, request

from stockade.api.auth import requires
from stockade.api.metrics import Metrics
from stockade.api.port import EnginePort
from stockade.api.problems import Problem
from stockade.api.sse import EventStream, ProductStream, ProductWatch, SseStream, Streams
from stockade.engine.models import Event
from stockade.engine.validation import check_sku
from stockade.errors import FeedGone, InvalidRequest
from stockade.outbound.service import Outbound
from stockade.outbound.sinks import SinkOptions
from stockade.outbound.webhooks import DeliveryOptions

__all__ = ["MAX_SEQ", "EventPage", "FeedCollector", "FeedService", "FeedSettings", "feed"]

#: The largest seq a query may name: 18 digits (the stores keep seqs in 64-bit integers).
MAX_SEQ = 10**18 - 1


class FeedSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Streams and webhooks: ``max_streams`` open at once per server (both kinds together),
    a keep-alive after ``keepalive_s`` of silence, each stream ended after ``lifetime_s``
    (clients reconnect and resume), a product stream's messages at most every
    ``product_interval_s``; ``delivery``: how the server's :class:`~stockade.outbound.service.
    Outbound` delivers webhooks (see :class:`~stockade.outbound.webhooks.DeliveryOptions`);
    ``sinks``: how it publishes to brokers (:class:`~stockade.outbound.sinks.SinkOptions`)."""

    max_streams: int = 1000
    keepalive_s: float = 15.0
    lifetime_s: float = 3600.0
    product_interval_s: float = 1.0
    delivery: DeliveryOptions = msgspec.field(default_factory=DeliveryOptions)
    sinks: SinkOptions = msgspec.field(default_factory=SinkOptions)


class EventPage(msgspec.Struct):
    items: list[Event]
    next_after: int


class FeedService:
    """A server's streams and product watch, over ``engine`` (its port)."""

    def __init__(self, engine: EnginePort, settings: FeedSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.streams = Streams(max_streams=settings.max_streams, keepalive_s=settings.keepalive_s,
                               lifetime_s=settings.lifetime_s)  # fmt: skip
        self.watch = ProductWatch(engine)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the feed for product streams until cancelled."""
        await self.watch.run(task_status=task_status)

    def stop_streams(self) -> None:
        """End every stream now and refuse new ones (the server is stopping). Never blocks."""
        self.streams.stop()

    def lag(self, head: int | None, *others: int) -> int:
        """The events up to ``head`` (the feed's) that the slowest consumer (a stream, the
        product watch, or one of the cursors ``others``: the deliveries') has not read yet; 0
        without consumers."""
        if head is None:
            return 0
        cursors = [*self.streams.cursors(), *others]
        if self.watch.cursor is not None:
            cursors.append(self.watch.cursor)
        return max(head - min(cursors), 0) if cursors else 0


class FeedCollector(Collector):
    """The feed's metrics, read at scrape time: the head (the one ``metrics`` last read from
    the engine, :meth:`Metrics.refresh`), the lag of the slowest consumer (counting
    ``outbound``'s deliveries when this process runs them), and open streams."""

    def __init__(
        self, service: FeedService, metrics: Metrics, outbound: Outbound | None = None
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.outbound = outbound

    def collect(self) -> list[Metric]:
        service = self.service
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        streams = service.streams
        head = float(self.metrics.feed_head or 0)
        others = () if self.outbound is None else self.outbound.cursors()
        lag = float(service.lag(self.metrics.feed_head, *others))
        refused = float(streams.refused)
        return [
            gauge("stockade_feed_head", "The newest change-feed seq", value=head),
            gauge("stockade_feed_lag", "Events the slowest feed consumer has not read", value=lag),
            gauge("stockade_event_streams", "Event streams open", value=float(len(streams))),
            counter("stockade_event_streams_refused", "Streams refused", value=refused),
        ]


feed = Blueprint("feed", __name__)
_encoder = msgspec.json.Encoder()


def _service() -> FeedService:
    service: FeedService = current_app.config["STOCKADE_FEED"]
    return service


def _seq(name: str, value: str | None, default: int) -> int:
    """A seq from the query or a header: digits only (no sign, space or ``_``), at most
    MAX_SEQ; InvalidRequest otherwise."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_SEQ:
        raise InvalidRequest(f"{name} must be an event seq (an integer from 0 to {MAX_SEQ})")
    return int(value)


def _query(*known: str) -> None:
    """Refuse a query naming a parameter the route does not take (a typo would otherwise read
    the whole feed unfiltered)."""
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        raise InvalidRequest(f"unknown query parameter {unknown[0]!r}: use {', '.join(known)}")


def _types() -> list[str] | None:
    value = request.args.get("types")
    return None if value is None else value.split(",")


def _gone(exc: FeedGone) -> Problem:
    return Problem(410, "feed-gone", "Feed position gone", str(exc), first=exc.first, last=exc.last)


def _stream(open_stream: Callable[[], SseStream]) -> Response:
    """The streaming answer; for HEAD, its head only (no stream is opened: nothing would ever
    read it, nor find out that the client has gone)."""
    body: SseStream | bytes = b"" if request.method == "HEAD" else open_stream()
    response = Response(body, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each message on at once
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut a stream short
    return response


@feed.get("/v1/events")
@requires("service")
async def list_events() -> Response:
    _query("after", "limit", "types")
    after = _seq("after", request.args.get("after"), 0)
    limit = _seq("limit", request.args.get("limit"), 100)
    try:
        events, next_after = await _service().engine.event_page(after, limit, _types())
    except FeedGone as exc:
        raise _gone(exc) from None
    return Response(_encoder.encode(EventPage(events, next_after)), content_type="application/json")


@feed.get("/v1/events/stream")
@requires("service")
async def stream_events() -> Response:
    _query("after", "types")
    service = _service()
    engine = service.engine
    after = _seq("after", request.args.get("after"), await engine.feed_head() or 0)
    resume = request.headers.get("Last-Event-ID")
    if resume is not None:  # a reconnecting EventSource: resume after what it saw last
        after = _seq("Last-Event-ID", resume, 0)
    types = _types()
    service.streams.admit()
    try:
        await engine.event_page(after, 1, types)  # refuses a position it cannot serve, here
    except FeedGone as exc:
        raise _gone(exc) from None
    return _stream(lambda: EventStream(service.streams, engine.events(after, types)))


@feed.get("/v1/products/<sku>/stream")
@requires("anyone")
async def stream_product(sku: str) -> Response:
    check_sku(sku)
    _query()
    service = _service()
    engine = service.engine
    service.streams.admit()
    if await engine.feed_head() is None:
        raise _gone(FeedGone("this server keeps no change feed to stream from"))
    watched = service.watch.watch(sku)  # before reading the level: no change falls between
    level = await engine.stock(sku)
    on_sale = await engine.on_sale(sku)
    interval = service.settings.product_interval_s
    return _stream(
        lambda: ProductStream(
            service.streams, watched, level, interval, on_sale, lambda: engine.on_sale(sku)
        )
    )
