"""The engine's side of one connection: :func:`serve_connection`.

After the handshake (:mod:`stockade.protocol.auth`) it reads frames and runs each call as a
task of its own, so many calls are in flight at once and their replies go out as they finish,
in any order, batched by the writer. A connection has at most ``max_in_flight`` calls running;
a request beyond that is answered at once with Overloaded. A stream (``events``) sends items
only as the client grants credit, so a slow reader holds back its own stream, never the
engine's memory.

A frame that cannot be read (garbage, truncated, oversized, out of turn), a peer that fails
the handshake or does not finish it within ``handshake_timeout_s``: that connection is dropped
with a log line, and nothing else is touched. An unexpected exception in a call is logged with
its traceback and answered as an ``internal`` error; the connection goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import msgspec
import trio

from stockade.engine.engine import Engine
from stockade.errors import EngineClosed, EngineRefused, InvalidRequest, Overloaded, StockadeError
from stockade.protocol.auth import server_handshake
from stockade.protocol.calls import ENGINE_CALLS, CallBase
from stockade.protocol.codes import error_to_wire
from stockade.protocol.dispatch import dispatch, dispatch_now, subscribe
from stockade.protocol.frames import (
    MAX_FRAME_SIZE,
    STREAM_WINDOW,
    Cancel,
    Credit,
    Failure,
    FrameStream,
    Item,
    Ping,
    Pong,
    ProtocolError,
    RequestIn,
    Result,
)

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "HANDSHAKE_TIMEOUT_S",
    "CallTracer",
    "Handler",
    "serve_connection",
]

_log = logging.getLogger("stockade.protocol")

#: Calls one connection may have running at once; more are answered with Overloaded.
DEFAULT_MAX_IN_FLIGHT = 4096
#: A peer must finish the handshake within this many seconds.
HANDSHAKE_TIMEOUT_S = 10.0

#: Serves a call that is not an Engine method (registered by the engine process).
Handler = Callable[[Any], Awaitable[Any]]
#: Opens the span a call runs in: ``(call name, traceparent, tracestate)``.
CallTracer = Callable[[str, str | None, str | None], AbstractContextManager[object]]

#: Modes of the calls answered in the read loop itself: they never block.
_AT_ONCE = frozenset({"sync", "property"})
_inbound = msgspec.msgpack.Decoder(RequestIn | Cancel | Credit | Ping)
_calls_decoders: dict[frozenset[type[CallBase[Any]]], msgspec.msgpack.Decoder[Any]] = {}


def _call_decoder(extra: Mapping[type[CallBase[Any]], Handler]) -> msgspec.msgpack.Decoder[Any]:
    """One decoder per set of call types, built once (Engine calls plus handlers' calls)."""
    key = frozenset(extra)
    decoder = _calls_decoders.get(key)
    if decoder is None:
        types = tuple(ENGINE_CALLS) + tuple(t for t in extra if t not in ENGINE_CALLS)
        union: Any = types[0]
        for t in types[1:]:
            union = union | t
        decoder = _calls_decoders[key] = msgspec.msgpack.Decoder(union)
    return decoder


class _Credit:
    """A stream's credit: items the client can still take."""

    __slots__ = ("available", "granted")

    def __init__(self, n: int) -> None:
        self.available = n
        self.granted = trio.Event()

    def grant(self, n: int) -> None:
        self.available += n
        self.granted.set()

    async def take(self) -> None:
        while self.available <= 0:
            self.granted = trio.Event()
            await self.granted.wait()
        self.available -= 1


async def serve_connection(
    stream: trio.abc.Stream,
    engine: Engine,
    *,
    secret: bytes | None = None,
    handlers: Mapping[type[CallBase[Any]], Handler] | None = None,
    stop: trio.Event | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_frame: int = MAX_FRAME_SIZE,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    tracer: CallTracer | None = None,
    peer: str = "a client",
) -> None:
    """Serve one connection until the client leaves, breaks the protocol, or ``stop`` is set
    (then: read no more, answer the calls in flight, flush, close). Always closes ``stream``;
    never raises for what the peer does (it is logged). Cancellable: cancelling drops the
    connection and cancels its calls (an Engine call then finishes or not as its own
    cancellation rules say; the client learns nothing of it)."""
    frames = FrameStream(stream, max_frame)
    try:
        try:
            with trio.fail_after(handshake_timeout_s):
                await server_handshake(frames, secret)
        except EngineRefused as refused:
            _log.warning("engine refused a connection from %s: %s", peer, refused)
            return
        except trio.TooSlowError:
            _log.warning("engine dropped %s: no handshake within %ss", peer, handshake_timeout_s)
            return
        except (ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            _log.warning("engine dropped %s during the handshake: %s", peer, exc)
            return
        connection = _Connection(frames, engine, handlers or {}, max_in_flight, tracer, peer)
        await connection.serve(stop)
    finally:
        with trio.CancelScope(shield=True):
            await frames.aclose()


class _Connection:
    def __init__(
        self,
        frames: FrameStream,
        engine: Engine,
        handlers: Mapping[type[CallBase[Any]], Handler],
        max_in_flight: int,
        tracer: CallTracer | None,
        peer: str,
    ) -> None:
        self.frames = frames
        self.engine = engine
        self.handlers = handlers
        self.decoder = _call_decoder(handlers)
        self.max_in_flight = max_in_flight
        self.tracer = tracer
        self.peer = peer
        self.calls: dict[int, trio.CancelScope | None] = {}  # a stream's scope, to end it
        self.credits: dict[int, _Credit] = {}
        self.idle: trio.Event | None = None  # set when the last call ends, while stopping

    async def serve(self, stop: trio.Event | None) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, nursery)
            reading = trio.CancelScope()
            if stop is not None:
                nursery.start_soon(self._stop_reading, stop, reading)
            with reading:
                await self._read(nursery)
            if reading.cancelled_caught:  # stopping: answer what is in flight first
                self._end_streams()
                while self.calls:
                    idle = self.idle = trio.Event()
                    await idle.wait()
                await self.frames.wait_sent()
            nursery.cancel_scope.cancel()

    def _end_streams(self) -> None:
        """Streams never finish by themselves: end each with EngineClosed."""
        for id in list(self.credits):
            self._fail(id, EngineClosed("the engine is shutting down"))
            scope = self.calls[id]
            assert scope is not None
            scope.cancel()

    async def _stop_reading(self, stop: trio.Event, reading: trio.CancelScope) -> None:
        await stop.wait()
        reading.cancel()

    async def _write(self, nursery: trio.Nursery) -> None:
        try:
            await self.frames.run_writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            _log.info("engine lost the connection from %s: %s", self.peer, exc)
            nursery.cancel_scope.cancel()

    async def _read(self, nursery: trio.Nursery) -> None:
        frames = self.frames
        while True:
            try:
                body = await frames.receive()
                if body is None:
                    break
                frame = _inbound.decode(body)
            except (ProtocolError, msgspec.DecodeError) as exc:
                _log.warning("engine dropped %s: a bad frame (%s)", self.peer, exc)
                break
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                _log.info("engine lost the connection from %s: %s", self.peer, exc)
                break
            if type(frame) is RequestIn:
                if frame.id in self.calls:
                    _log.warning("engine dropped %s: call id %s reused", self.peer, frame.id)
                    break
                self._request(frame, nursery)
            elif type(frame) is Cancel:
                if (running := self.calls.get(frame.id)) is not None:
                    running.cancel()
            elif type(frame) is Credit:
                if (credit := self.credits.get(frame.id)) is not None:
                    credit.grant(frame.n)
            else:
                assert type(frame) is Ping
                frames.send_nowait(Pong(frame.n))
        # the client left or broke the protocol: its calls' answers have nowhere to go
        nursery.cancel_scope.cancel()

    def _request(self, request: RequestIn, nursery: trio.Nursery) -> None:
        """Start answering ``request``: at once for a call that never blocks (``has_product``,
        ``statistics``...), else in a task of its own (bounded by ``max_in_flight``)."""
        id = request.id
        try:
            call = self.decoder.decode(request.call)
        except msgspec.DecodeError as exc:
            self._fail(id, InvalidRequest(f"the engine cannot read this call: {exc}"))
            return
        spec = ENGINE_CALLS.get(type(call))
        if spec is not None and spec.mode in _AT_ONCE and self.tracer is None:
            try:
                value = dispatch_now(self.engine, call)
            except Exception as error:
                self._failed(id, call, error)
            else:
                self._reply(id, call, value)
            return
        if len(self.calls) >= self.max_in_flight:
            self._fail(id, Overloaded("too many calls in flight on this connection"))
            return
        stream = spec is not None and spec.mode == "stream"
        self.calls[id] = trio.CancelScope() if stream else None
        nursery.start_soon(self._run, request, call, stream)

    async def _run(self, request: RequestIn, call: CallBase[Any], stream: bool) -> None:
        id = request.id
        try:
            if self.tracer is None:
                await self._answer(id, call, stream)
            else:
                tag = type(call).__struct_config__.tag
                with self.tracer(str(tag), request.traceparent, request.tracestate):
                    await self._answer(id, call, stream)
        finally:
            del self.calls[id]
            self.credits.pop(id, None)
            if not self.calls and self.idle is not None:
                self.idle.set()

    async def _answer(self, id: int, call: CallBase[Any], stream: bool) -> None:
        try:
            if stream:
                scope = self.calls[id]
                assert scope is not None
                with scope:  # a Cancel frame, or a stop, ends the stream
                    await self._stream(id, call)
                return
            handler = self.handlers.get(type(call))
            if handler is not None:
                value = await handler(call)
            else:
                value = await dispatch(self.engine, call)
        except Exception as error:
            self._failed(id, call, error)
            return
        self._reply(id, call, value)

    def _reply(self, id: int, call: CallBase[Any], value: Any) -> None:
        try:
            self.frames.send_nowait(Result(id, value))
        except (TypeError, OverflowError, ProtocolError) as error:
            _log.exception("engine could not send the answer to %s", call)
            self._fail(id, error)

    def _failed(self, id: int, call: CallBase[Any], error: Exception) -> None:
        if not isinstance(error, StockadeError):
            _log.exception("engine call %s from %s failed unexpectedly", call, self.peer)
        self._fail(id, error)

    async def _stream(self, id: int, call: CallBase[Any]) -> None:
        credit = self.credits[id] = _Credit(STREAM_WINDOW)
        async for item in subscribe(self.engine, call):
            await credit.take()
            self.frames.send_nowait(Item(id, item))
        self.frames.send_nowait(Result(id, None))

    def _fail(self, id: int, error: BaseException) -> None:
        code, message, fields = error_to_wire(error)
        self.frames.send_nowait(Failure(id, code, message, fields))
