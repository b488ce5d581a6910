"""Broker sinks (design.md §14): each sink's events published to NATS JetStream, Redis Streams
or RabbitMQ, in seq order, at least once, the seq as each message's id.

One task per sink reads the change feed from its cursor (``engine.events``, filtered by its
types) and takes what is there, up to ``batch`` events at once (it never waits to fill a
batch); the batch is published with every message in flight together and the broker's
acknowledgements awaited together (see :mod:`stockade.outbound.brokers`), and only then does
the cursor move past it. The brokers' clients are asyncio: they run on one asyncio loop thread
for all sinks (:class:`~stockade._asyncio.AsyncioThread`, the plumbing the PostgreSQL store
uses), which trio awaits without a worker thread. A batch publishes at most ``timeout_s``.

A failed batch (a broker down, unreachable, refusing, or slower than ``timeout_s``) closes the
sink's connection and is published again, whole, over a new one after ``backoff_s``, doubling
up to ``max_backoff_s`` (jittered). The messages of it that had arrived arrive again: NATS
drops them by ``Nats-Msg-Id``, Redis by the entry id, RabbitMQ consumers by ``message_id``.
After ``retry_budget_s`` of failures the sink is *failing* (its cursor stays, nothing is
skipped) until a batch is published. A slow or dead broker holds back only its own sink.

Progress is saved as webhooks' is (:mod:`stockade.outbound.deliveries`): a restart publishes
again from the cursor saved last. Errors shown or logged never carry the URL's password.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import quote

import msgspec
import trio

from stockade._asyncio import AsyncioThread
from stockade.engine.engine import Engine
from stockade.engine.models import Event
from stockade.engine.validation import check_location_id
from stockade.errors import InvalidRequest
from stockade.outbound.brokers import Publisher, open_publisher
from stockade.outbound.deliveries import Deliveries, Followed, RetryOptions, jittered
from stockade.outbound.sinkurl import SinkTarget, parse
from stockade.persistence.sinks import SinkRecord, SinkTable

__all__ = ["Sink", "SinkOptions", "Sinks"]

_encoder = msgspec.json.Encoder()
#: The longest error a sink keeps (a broker may say a lot).
_MAX_ERROR = 500


class SinkOptions(RetryOptions, frozen=True, kw_only=True):
    """How sinks publish (see the module docstring and RetryOptions); times in seconds."""

    max_backoff_s: float = 60.0
    timeout_s: float = 10.0
    #: The most events one sink has in flight (one batch).
    batch: int = 500


class Sink(Followed[SinkRecord]):
    """A sink and where its publishing stands (what ``GET /v1/sinks/{id}`` shows), with its
    counters: events ``delivered`` and batches failed (``failures``) since the process
    started."""

    def __init__(self, record: SinkRecord) -> None:
        super().__init__(record)
        self.target: SinkTarget | None = None
        self.refused: str | None = None  # why a stored URL cannot be used (edited by hand)
        try:
            self.target = parse(record.url)
        except InvalidRequest as exc:
            self.refused = str(exc)
        self.publisher: Publisher | None = None
        self.delivered = 0
        self.failures = 0

    def scrub(self, error: str) -> str:
        """``error`` without the URL's password, and not too long."""
        password = None if self.target is None else self.target.password
        if password:  # as given, and as a URL carries it
            for shown in {password, quote(password, safe=""), quote(password)}:
                error = error.replace(shown, "***")
        return error[:_MAX_ERROR]


class Sinks(Deliveries[Sink, SinkRecord]):
    """The sinks of a server, kept in ``table``, published from :meth:`run` (see
    :class:`~stockade.outbound.deliveries.Deliveries`)."""

    kind = "sink"

    def __init__(
        self, engine: Engine, table: SinkTable, options: SinkOptions | None = None, *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.options = options = options or SinkOptions()
        super().__init__(engine, table, options, wall_clock=wall_clock)
        self._aio: AsyncioThread | None = None
        self._running_now = False

    def _followed(self, record: SinkRecord) -> Sink:
        return Sink(record)

    async def put(self, sink_id: str, url: str, types: tuple[str, ...] | None) -> tuple[Sink, bool]:
        """Create or replace the sink ``sink_id``; return it and whether it is new. A new one
        publishes the events committed from now on; a replaced one keeps its cursor (its
        batch in flight is published again, to the new URL). Raises InvalidRequest for a bad
        id or URL, FeedGone when the engine keeps no change feed."""
        check_location_id(sink_id, what="sink id")
        parse(url)

        def record_for(old: Sink | None, now: float) -> SinkRecord:
            if old is None:
                return SinkRecord(sink_id, url, types, self._new_cursor(), now, now)
            return SinkRecord(
                sink_id, url, types, old.cursor, old.record.created_at, now, old.failing,
                old.last_error, old.last_error_at,
            )  # fmt: skip

        return await self._replace(sink_id, record_for)

    # -- publishing ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """The asyncio loop thread is started when a sink first publishes (a server without
        sinks runs no such thread), and closed when :meth:`run` ends."""
        self._running_now = True
        try:
            yield
        finally:
            self._running_now = False
            aio, self._aio = self._aio, None
            if aio is not None:
                with trio.CancelScope(shield=True):  # (run is ending: cancelled, most likely)
                    await trio.to_thread.run_sync(aio.close)

    def _batch(self, sink: Sink) -> int:
        return self.options.batch

    async def _follow(self, subscription: Sink) -> None:
        try:
            await super()._follow(subscription)
        finally:
            with trio.move_on_after(self.options.timeout_s, shield=True):
                await self._disconnect(subscription)

    async def _disconnect(self, sink: Sink) -> None:
        publisher, sink.publisher = sink.publisher, None
        if publisher is not None and self._aio is not None:
            await self._aio.run(publisher.close)

    async def _deliver(self, sink: Sink, events: list[Event]) -> None:
        """Publish ``events`` until the broker acknowledged them all (see the module
        docstring). Cancellable: the connection is then dropped (the batch is published again
        by whoever follows the sink next)."""
        options = self.options
        messages = [(event.seq, event.type, _encoder.encode(event)) for event in events]
        delay = options.backoff_s
        while True:
            try:
                await self._publish(sink, messages)
            except Exception as exc:
                sink.failures += 1
                error = sink.refused or sink.scrub(f"{type(exc).__name__}: {exc}".rstrip(": "))
                self.attempt_failed(sink, error)
                with trio.move_on_after(options.timeout_s, shield=True):
                    await self._disconnect(sink)
                most = options.max_backoff_s
                await trio.sleep(jittered(most if sink.failing else delay, most))
                delay = min(delay * 2, most)
                continue
            sink.delivered += len(messages)
            self.attempt_succeeded(sink)
            return

    async def _publish(self, sink: Sink, messages: list[tuple[int, str, bytes]]) -> None:
        assert self._running_now, "sinks publish only inside run()"
        if self._aio is None:
            self._aio = AsyncioThread("stockade-sinks")
        aio = self._aio
        if sink.target is None:
            raise InvalidRequest(sink.refused or "no target")
        if sink.publisher is None:
            publisher = open_publisher(sink.target, self.options.timeout_s)
            sink.publisher = publisher  # closed by _disconnect, opened or not
            with trio.fail_after(self.options.timeout_s * 2):
                await aio.run(publisher.open)
        with trio.fail_after(self.options.timeout_s * 2):  # (the clients time out first)
            await aio.run(sink.publisher.publish, messages)
