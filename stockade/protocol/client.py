"""The client: :class:`RemoteEngine`, the Engine's API over a connection to ``stockade
engine``, and :func:`open_remote_engine`, which keeps that connection up.

A handle keeps one connection (a *link*) to the first address that answers and admits it
(see :mod:`stockade.protocol.auth`). Calls from any number of tasks share the link: each gets
an id, its request is queued for the link's writer (one ``send_all`` per burst), and the
reader hands each reply to the task waiting for that id. A link is pinged every
``ping_interval_s``; one that stays silent for ``ping_timeout_s`` (an engine paused, a
network gone) is dropped, and so is one that breaks. Then every call in flight on it raises
EngineUnavailable (its outcome is unknown: retry with the same idempotency key) and the
handle reconnects in the background, trying each address in turn with a capped backoff.

Every call waits at most ``timeout_s`` (waiting for a link included) and then raises
EngineUnavailable; a reply arriving after its caller gave up is dropped.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import msgspec
import trio

from stockade.engine.models import Event
from stockade.errors import (
    EngineClosed,
    EngineRefused,
    EngineUnavailable,
    InvalidRequest,
    StockadeError,
)
from stockade.protocol.addresses import Address, connect, parse_addresses
from stockade.protocol.auth import client_handshake
from stockade.protocol.calls import ENGINE_CALLS, CallBase, CallSpec, EventsCall, spec_of
from stockade.protocol.frames import (
    STREAM_WINDOW,
    Cancel,
    Credit,
    FrameStream,
    ProtocolError,
    Request,
)
from stockade.protocol.link import Link, Pending
from stockade.protocol.surface import AsyncEngineCalls

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "PING_INTERVAL_S",
    "PING_TIMEOUT_S",
    "RemoteEngine",
    "RemoteEvents",
    "TraceContext",
    "open_remote_engine",
]

_log = logging.getLogger("stockade.protocol")

_R = TypeVar("_R")

#: How long a call waits for its answer (a link included) before EngineUnavailable.
DEFAULT_TIMEOUT_S = 5.0
PING_INTERVAL_S = 1.0
PING_TIMEOUT_S = 3.0
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 1.0

_decoders: dict[type[CallBase[Any]], tuple[CallSpec, msgspec.msgpack.Decoder[Any]]] = {}

#: ``() -> (traceparent, tracestate)`` of the current span, when tracing is on.
TraceContext = Callable[[], tuple[str | None, str | None]]


def _decoder(kind: type[CallBase[Any]]) -> tuple[CallSpec, msgspec.msgpack.Decoder[Any]]:
    found = _decoders.get(kind)
    if found is None:
        spec = ENGINE_CALLS.get(kind) or spec_of(kind, "handler")
        found = _decoders[kind] = (spec, msgspec.msgpack.Decoder(spec.result))
    return found


class RemoteEngine(AsyncEngineCalls):
    """The Engine's API over the engine protocol: the same names, arguments, results and
    errors as :class:`stockade.Engine`, every method ``async`` (``has_product``,
    ``locations``, ``statistics``, ``feed_head``... included). Made by
    :func:`open_remote_engine`; safe to share between tasks.

    Besides the Engine's errors, every call may raise EngineUnavailable (no link within the
    timeout, the link lost with the call in flight, or no answer within the timeout) and
    EngineRefused (the engine refuses this client's secret or version). ``connector`` opens a
    stream to an address (tests give one of memory streams)."""

    def __init__(
        self,
        addresses: list[Address],
        *,
        secret: bytes | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ping_interval_s: float = PING_INTERVAL_S,
        ping_timeout_s: float = PING_TIMEOUT_S,
        trace_context: TraceContext | None = None,
        connector: Callable[[Address], Awaitable[trio.abc.Stream]] = connect,
    ) -> None:
        self.addresses = addresses
        self._connector = connector
        self.timeout_s = timeout_s
        self._secret = secret
        self._ping = (ping_interval_s, ping_timeout_s)
        self._trace_context = trace_context
        self._link: Link | None = None
        self._changed = trio.Event()
        self._ids = itertools.count(1)
        self._closed = False
        self.refused: EngineRefused | None = None
        self.last_error: str | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a link to an engine is up and has answered within the ping timeout."""
        link = self._link
        return link is not None and link.alive

    @property
    def address(self) -> Address | None:
        """The address of the engine this handle is linked to now, if any."""
        link = self._link
        return link.address if link is not None and link.alive else None

    async def wait_connected(self) -> None:
        """Wait until a link is up. Raises EngineRefused while the engine refuses this client,
        EngineClosed once the handle is closed. Cancellable (put a deadline around it)."""
        while True:
            if self._closed:
                raise EngineClosed("this remote engine handle is closed")
            if self.connected:
                return
            if self.refused is not None:  # a fresh error for each caller, its own traceback
                raise EngineRefused(str(self.refused)) from self.refused
            await self._changed.wait()

    def _set_link(self, link: Link | None) -> None:
        self._link = link
        self._changed.set()
        self._changed = trio.Event()

    # -- calls --------------------------------------------------------------------------------

    async def call(self, call: CallBase[_R], *, timeout_s: float | None = None) -> _R:
        """Send any call (an Engine call, or one an engine-process handler serves) and return
        its result, decoded as its type. Raises its error, EngineUnavailable or
        EngineRefused (see the class), InvalidRequest for an argument that cannot be sent.
        Cancellable: the engine still finishes the call; its late answer is dropped."""
        return await self._call(call, timeout_s)

    async def _call(self, call: CallBase[_R], timeout_s: float | None = None) -> _R:
        spec, decoder = _decoder(type(call))
        limit = self.timeout_s if timeout_s is None else timeout_s
        link = self._link
        if link is None or not link.alive:  # the slow path: wait for a link, within the limit
            started = trio.current_time()
            link = None
            with trio.move_on_after(limit):
                link = await self._wait_link()
            if link is None:
                raise EngineUnavailable(f"{spec.name}: no engine answered within {limit} s")
            limit = max(limit - (trio.current_time() - started), 0.0)
        pending = Pending(spec.name)
        id = next(self._ids)
        link.add(id, pending, limit)
        try:
            self._send(link, id, call, spec)
            await pending.done.wait()
        finally:
            link.pending.pop(id, None)
        if pending.error is not None:
            raise pending.error
        assert pending.value is not None
        try:
            return decoder.decode(pending.value)  # type: ignore[no-any-return]
        except msgspec.DecodeError as exc:
            raise StockadeError(f"{spec.name}: an answer this client cannot read: {exc}") from exc

    def _send(self, link: Link, id: int, call: CallBase[Any], spec: CallSpec) -> None:
        parent = self._trace_context() if self._trace_context is not None else (None, None)
        try:
            link.frames.send_nowait(Request(id, call, *parent))
        except (TypeError, OverflowError, ProtocolError) as exc:
            raise InvalidRequest(f"{spec.name}: cannot send these arguments: {exc}") from exc

    async def _wait_link(self) -> Link:
        while True:
            if self._closed:
                raise EngineClosed("this remote engine handle is closed")
            link = self._link
            if link is not None and link.alive:
                return link
            if self.refused is not None:  # a fresh error for each caller, its own traceback
                raise EngineRefused(str(self.refused)) from self.refused
            await self._changed.wait()

    def events(self, after: int = 0, types: Iterable[str] | None = None) -> RemoteEvents:
        """The change feed after ``after`` (see :meth:`stockade.Engine.events`): an async
        iterator, with ``aclose()`` (or ``async with``) to stop it. The engine sends events
        only as this reader takes them (a window of STREAM_WINDOW). Reading raises the feed's
        errors (FeedGone, EngineClosed), and EngineUnavailable when the link is lost: start
        again after ``cursor`` (the last seq read). A subscription left without ``aclose()``
        holds at most STREAM_WINDOW events, here and in the engine, until the link closes."""
        return RemoteEvents(self, EventsCall(after, types))  # type: ignore[arg-type]

    # -- the link -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a link up until cancelled: connect to the first address that answers and
        admits this client, serve it until it is lost, then start again (at once, then with
        a backoff doubling up to 1 s while no address answers)."""
        task_status.started()
        delay = _BACKOFF_MIN_S
        while True:
            for address in self.addresses:
                link = await self._open(address)
                if link is None:
                    continue
                delay = _BACKOFF_MIN_S
                _log.info("linked to the engine at %s", address)
                self._set_link(link)
                reason = await link.run(*self._ping)
                self._set_link(None)
                _log.warning("lost the engine at %s: %s", address, reason)
                break
            else:
                await trio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _open(self, address: Address) -> Link | None:
        try:
            with trio.fail_after(self._ping[1]):
                stream = await self._connector(address)
                frames = FrameStream(stream)
                try:
                    await client_handshake(frames, self._secret)
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await frames.aclose()
                    raise
        except EngineRefused as refused:
            if self.refused is None or str(self.refused) != str(refused):
                _log.error("the engine at %s refused this client: %s", address, refused)
            self.refused = refused
            self._changed.set()
            self._changed = trio.Event()
            return None
        except (OSError, trio.TooSlowError, ProtocolError, trio.BrokenResourceError) as exc:
            self.last_error = f"{address}: {exc or type(exc).__name__}"
            return None
        self.refused = None
        return Link(frames, address)

    def _close(self) -> None:
        self._closed = True
        self._changed.set()


class RemoteEvents:
    """A subscription to a remote engine's change feed (see :meth:`RemoteEngine.events`)."""

    _decoder = msgspec.msgpack.Decoder(Event)

    def __init__(self, remote: RemoteEngine, call: EventsCall) -> None:
        self._remote = remote
        self._call = call
        self._link: Link | None = None
        self._id = 0
        self._pending: Pending | None = None
        self._taken = 0
        self.cursor = call.after  # the seq of the last event read

    def __aiter__(self) -> RemoteEvents:
        return self

    async def __aenter__(self) -> RemoteEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def __anext__(self) -> Event:
        """The next event; waits for one (no timeout: the link's pings notice a lost engine).
        Cancellable."""
        pending = self._pending
        if pending is None:
            pending = await self._open()
        while not pending.items:
            if pending.ended:
                self._pending = None
                if pending.error is not None:
                    raise pending.error
                raise StopAsyncIteration
            pending.done = trio.Event()
            await pending.done.wait()
        raw = pending.items.popleft()
        self._taken += 1
        link = self._link
        if self._taken >= STREAM_WINDOW // 2 and link is not None:
            link.frames.send_nowait(Credit(self._id, self._taken))
            self._taken = 0
        event: Event = self._decoder.decode(raw)
        self.cursor = event.seq
        return event

    async def _open(self) -> Pending:
        remote = self._remote
        with trio.move_on_after(remote.timeout_s):
            link = await remote._wait_link()
            self._link, self._id = link, next(remote._ids)
            self._pending = pending = Pending("events")
            link.add(self._id, pending)
            remote._send(link, self._id, self._call, _decoder(EventsCall)[0])
            return pending
        raise EngineUnavailable(f"events: no engine answered within {remote.timeout_s} s")

    async def aclose(self) -> None:
        """Stop the subscription (the engine stops sending). Never blocks."""
        link, pending = self._link, self._pending
        self._pending = None
        if link is not None and pending is not None and link.alive:
            link.pending.pop(self._id, None)
            link.frames.send_nowait(Cancel(self._id))
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_remote_engine(
    url: str,
    *,
    secret: str | bytes | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    wait: bool = True,
    tracing: bool = False,
    ping_interval_s: float = PING_INTERVAL_S,
    ping_timeout_s: float = PING_TIMEOUT_S,
) -> AsyncIterator[RemoteEngine]:
    """A :class:`RemoteEngine` for the ``async with`` block, linked to the engine at ``url``
    (``unix:PATH`` or ``tcp://HOST:PORT``, or several comma-separated: whichever answers and
    admits this client; e.g. a PostgreSQL owner and its standby). ``secret`` is the engine's
    ``STOCKADE_ENGINE_SECRET`` (required over TCP); left out (None), that environment variable
    is read, as the ``stockade`` commands read it. ``timeout_s`` bounds every call. With
    ``wait`` (the default), entering blocks until linked, raising EngineUnavailable when no
    address admits this client within ``timeout_s`` and EngineRefused at once when an engine
    refuses it; without, it returns at once (see :attr:`RemoteEngine.connected`). With
    ``tracing`` each call carries the current OpenTelemetry span's W3C trace context.

    A task in the block keeps the link up and reconnects after it is lost; leaving the block
    closes the link (calls in flight raise EngineUnavailable). Raises InvalidRequest for a bad
    ``url``."""
    addresses = parse_addresses(url)
    if secret is None:
        secret = os.environ.get("STOCKADE_ENGINE_SECRET") or None
    if isinstance(secret, str):
        secret = secret.encode()
    trace_context: TraceContext | None = None
    if tracing:
        from stockade.protocol.tracing import current_trace_context

        trace_context = current_trace_context
    remote = RemoteEngine(
        addresses,
        secret=secret or None,
        timeout_s=timeout_s,
        ping_interval_s=ping_interval_s,
        ping_timeout_s=ping_timeout_s,
        trace_context=trace_context,
    )
    failure: StockadeError | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(remote.run)
        if wait:
            failure = await _first_link(remote, url, timeout_s)
            if failure is not None:
                nursery.cancel_scope.cancel()
        if failure is None:
            try:
                yield remote
            finally:
                remote._close()
                nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _first_link(remote: RemoteEngine, url: str, timeout_s: float) -> StockadeError | None:
    """None once ``remote`` is linked; else the error to raise (raised outside the nursery,
    so the caller sees it as itself)."""
    try:
        with trio.move_on_after(timeout_s):
            await remote.wait_connected()
    except EngineRefused as refused:
        return refused
    if remote.connected:
        return None
    last = f" (last: {remote.last_error})" if remote.last_error else ""
    return EngineUnavailable(f"no engine at {url} answered within {timeout_s} s{last}")
