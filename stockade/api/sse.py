"""Server-Sent Events: the change feed, and a product's stock level, streamed to HTTP clients.

A stream is an async iterator of byte chunks, the body of a streaming Quart response; hypercorn
writes each chunk to the socket as it is sent (one message, one write), so nothing waits in a
buffer. Messages follow the HTML standard's ``text/event-stream`` format: ``id:`` (an event's
seq, which a reconnecting ``EventSource`` sends back as ``Last-Event-ID``), ``event:`` and one
``data:`` line of JSON; a line starting with ``:`` is a comment (the keep-alive).

:class:`Streams` is the registry every stream of a server belongs to:

* it bounds the streams open at once: past ``max_streams`` a new one is refused (503 with
  ``Retry-After``) before anything is read;
* a stream sends a keep-alive comment after ``keepalive_s`` without a message, so proxies keep
  the connection and a client that went away is found out (by the write that fails: hypercorn
  does not read from a connection while it answers);
* a stream ends by itself after ``lifetime_s`` (the client reconnects, and resumes), so no
  connection lives forever;
* :meth:`Streams.stop` ends every stream at once, cleanly (the body's end is sent), when the
  server stops: hypercorn's graceful shutdown waits for open responses, and would otherwise
  wait out its whole grace period for streams that never end by themselves.

A product's stream (:class:`ProductStream`) is fed by one :class:`ProductWatch` per server,
which follows the feed's ``stock.changed`` events and keeps the newest level of each product
someone watches; each stream sends the newest level at most once per ``interval_s`` (a hot
product's thousands of changes a second become one message per interval per browser).
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio

from stockade.api.logs import log_event
from stockade.api.port import EnginePort, FeedCursor
from stockade.api.problems import Problem
from stockade.engine.models import Event, StockLevel
from stockade.errors import EngineClosed, EngineUnavailable, FeedGone, StoreUnavailable

__all__ = [
    "KEEPALIVE",
    "EventStream",
    "ProductStream",
    "ProductWatch",
    "SseStream",
    "Streams",
    "event_message",
]

#: The comment a stream sends when it has had nothing to send for a while.
KEEPALIVE = b": keep-alive\n\n"
_encoder = msgspec.json.Encoder()


def event_message(event: Event) -> bytes:
    """One change-feed event as an SSE message (its JSON holds no newline)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.seq,
        event.type.encode(),
        _encoder.encode(event),
    )


def _level_message(level: Any) -> bytes:
    return b"event: stock\ndata: %s\n\n" % _encoder.encode(level)


class Streams:
    """The streams a server has open (see the module docstring). Never blocks."""

    def __init__(
        self, *, max_streams: int, keepalive_s: float, lifetime_s: float, retry_ms: int = 1000
    ) -> None:
        self.max_streams = max_streams
        self.keepalive_s = keepalive_s
        self.lifetime_s = lifetime_s
        self.retry_ms = retry_ms
        self.stopping = False
        self.refused = 0
        # A stream leaves when it ends, or when it is dropped unstarted (a response never sent).
        self._open: weakref.WeakSet[SseStream] = weakref.WeakSet()

    def __len__(self) -> int:
        return len(self._open)

    def admit(self) -> None:
        """Raise a 503 Problem if no new stream may open now (too many, or stopping)."""
        if self.stopping:
            raise Problem(503, "shutting-down", "Shutting down",
                          "the server is stopping; connect again",
                          headers={"Retry-After": "1"})  # fmt: skip
        if len(self._open) >= self.max_streams:
            self.refused += 1
            raise Problem(503, "too-many-streams", "Too many streams",
                          f"this server streams to {self.max_streams} clients at most; "
                          "connect again later", headers={"Retry-After": "5"})  # fmt: skip

    def add(self, stream: SseStream) -> None:
        self._open.add(stream)

    def discard(self, stream: SseStream) -> None:
        self._open.discard(stream)

    def stop(self) -> None:
        """End every stream now (each sends the end of its body), and refuse new ones."""
        self.stopping = True
        for stream in list(self._open):
            stream.stop()

    def cursors(self) -> list[int]:
        """The position of every change-feed stream (the last seq each has read)."""
        return [s.cursor for s in list(self._open) if isinstance(s, EventStream)]


class SseStream:
    """One open stream: an async iterator of chunks that sends what :meth:`_message` returns,
    keep-alives between, and ends at its lifetime, at :meth:`stop`, or when :meth:`_message`
    raises StopAsyncIteration. Admit it with :meth:`Streams.admit` first."""

    def __init__(self, streams: Streams, first: bytes = b"") -> None:
        self._streams = streams
        self._pending = b"retry: %d\n\n" % streams.retry_ms + first
        self._ends_at = trio.current_time() + streams.lifetime_s
        self._scope: trio.CancelScope | None = None
        self.ended = False
        streams.add(self)

    def __aiter__(self) -> SseStream:
        return self

    async def __anext__(self) -> bytes:
        """The next chunk: waits for a message, at most ``keepalive_s`` (then a keep-alive).
        Cancellable (a client that went away): nothing is lost, the client resumes."""
        if self._pending:
            pending, self._pending = self._pending, b""
            await trio.lowlevel.checkpoint()
            return pending
        if self.ended or self._streams.stopping or trio.current_time() >= self._ends_at:
            await self.aclose()
            raise StopAsyncIteration
        message = None
        deadline = min(self._ends_at, trio.current_time() + self._streams.keepalive_s)
        with trio.CancelScope(deadline=deadline) as self._scope:
            try:
                message = await self._message()
            except StopAsyncIteration:
                self.ended = True
        self._scope = None
        if message is not None:
            return message
        if self.ended or self._streams.stopping or trio.current_time() >= self._ends_at:
            await self.aclose()
            raise StopAsyncIteration
        return KEEPALIVE

    async def _message(self) -> bytes:
        raise NotImplementedError

    def stop(self) -> None:
        self.ended = True
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        """Leave the registry (Quart calls this when the response ends, however it ends)."""
        self.ended = True
        self._streams.discard(self)


class EventStream(SseStream):
    """The change feed after a seq, one message per event, from ``reader``."""

    def __init__(self, streams: Streams, reader: FeedCursor) -> None:
        super().__init__(streams)
        self._reader = reader

    @property
    def cursor(self) -> int:
        return self._reader.cursor

    async def aclose(self) -> None:
        """Leave the registry and stop the reader (a remote one holds a subscription)."""
        await super().aclose()
        closing = getattr(self._reader, "aclose", None)
        if closing is not None:
            await closing()

    async def _message(self) -> bytes:
        try:
            event = await self._reader.__anext__()
        except EngineClosed as exc:  # the engine is closing: so is the server
            raise StopAsyncIteration from exc
        except (FeedGone, StoreUnavailable, EngineUnavailable) as exc:
            # Pruned while this reader was behind, or the store (a front's engine) is
            # unreachable: end the stream; the client reconnects from its Last-Event-ID and is
            # told what is wrong.
            log_event("event_stream_ended", error=str(exc), cursor=self._reader.cursor)
            raise StopAsyncIteration from exc
        return event_message(event)


class _Watched:
    """The newest level of one watched product; ``version`` counts changes."""

    __slots__ = ("__weakref__", "level", "lot", "version")

    def __init__(self) -> None:
        self.level: dict[str, Any] | None = None
        self.version = 0
        self.lot = trio.lowlevel.ParkingLot()


class ProductWatch:
    """Follows the change feed's ``stock.changed`` events (:meth:`run`) and keeps the newest
    level of each product a stream watches. One reader for every product stream of a server,
    however many there are; a product nobody watches costs nothing."""

    def __init__(self, engine: EnginePort, *, retry_s: float = 1.0) -> None:
        self.engine = engine
        self.retry_s = retry_s
        self._reader: FeedCursor | None = None
        self._watched: weakref.WeakValueDictionary[str, _Watched] = weakref.WeakValueDictionary()

    def watch(self, sku: str) -> _Watched:
        """The entry a stream of ``sku`` waits on (shared by every stream of ``sku``, dropped
        with the last of them)."""
        watched = self._watched.get(sku)
        if watched is None:
            watched = self._watched[sku] = _Watched()
        return watched

    @property
    def cursor(self) -> int | None:
        """The last seq read (wanted or not), while following the feed."""
        return None if self._reader is None else self._reader.cursor

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the feed from its head until cancelled or the engine closes. A store that
        cannot be read, or a reader that fell behind the retention, starts again from the
        newest event after ``retry_s``; so does a front whose engine cannot be reached. An
        engine without a feed has nothing to follow: returns at once."""
        task_status.started()
        while True:
            try:
                head = await self.engine.feed_head()
            except EngineUnavailable as exc:
                log_event("product_watch_restarted", error=str(exc))
                await trio.sleep(self.retry_s)
                continue
            if head is None:
                return
            self._reader = self.engine.events(head, ("stock.changed",))
            try:
                async for event in self._reader:
                    watched = self._watched.get(event.data["stock_level"]["sku"])
                    if watched is not None:
                        watched.level = event.data["stock_level"]
                        watched.version += 1
                        watched.lot.unpark_all()
            except EngineClosed:
                return
            except (FeedGone, StoreUnavailable, EngineUnavailable) as exc:
                log_event("product_watch_restarted", error=str(exc))
                self._reader = None
                await trio.sleep(self.retry_s)


class ProductStream(SseStream):
    """A product's StockLevel: ``level`` (the current one) at once, then the newest level
    each time it changes, at most once per ``interval_s``. With ``is_on_sale`` each message
    also says whether the product is on sale (``on_sale``, as ``GET /v1/products/{sku}``
    shows it; the first is ``on_sale``, each later one asks ``is_on_sale`` again, which never
    blocks long: a read of the product's rules)."""

    def __init__(
        self, streams: Streams, watched: _Watched, level: StockLevel, interval_s: float,
        on_sale: bool = True, is_on_sale: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:  # fmt: skip
        first: Any = level  # without is_on_sale: the StockLevel alone
        if is_on_sale is not None:
            first = {**msgspec.structs.asdict(level), "on_sale": on_sale}
        super().__init__(streams, _level_message(first))
        self._is_on_sale = is_on_sale
        self._watched = watched
        self._sent = watched.version
        self._interval_s = interval_s
        self._next_at = trio.current_time() + interval_s

    async def _message(self) -> bytes:
        watched = self._watched
        while watched.version == self._sent:
            await watched.lot.park()
        await trio.sleep_until(self._next_at)  # changes meanwhile coalesce into the newest
        self._sent = watched.version
        self._next_at = trio.current_time() + self._interval_s
        if self._is_on_sale is None:
            return _level_message(watched.level)
        assert watched.level is not None
        return _level_message({**watched.level, "on_sale": await self._is_on_sale()})
