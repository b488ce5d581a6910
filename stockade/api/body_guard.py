"""Every HTTP/1.x exchange leaves its connection usable or closed, never wedged.

:class:`BodyGuard` wraps the Quart app, behind the order fast path (which answers only bodies
that arrived whole and needs none of this: see :mod:`stockade.api.fastpath`). Three things it
takes care of, in hypercorn's HTTP/1.1 protocol (``hypercorn/protocol/h11.py``) as quart-trio
drives it:

* **hypercorn's ``send`` must not be cancelled.** The last message of a response ends the
  exchange, and hypercorn does the connection's bookkeeping inside that ``send`` call: it hands
  the app ``http.disconnect``, then recycles the connection for the next request and re-arms its
  keep-alive timer, or, when the request body was not read to its end, closes it. quart-trio
  answers ``http.disconnect`` by cancelling the request's task group, and the task that called
  ``send`` is still in it, so the bookkeeping died at its first checkpoint: a connection whose
  body was not read to its end was never closed nor recycled (the next request on it never got
  an answer), and a recycled one never got its keep-alive timer back (never timed out, and not
  closed at shutdown, which then waited out the whole grace period). The guard sends a
  response's last message shielded. That is safe for HTTP/1.x, whose ``send`` blocks only where
  hypercorn already shields it (writing to the socket) and on room in the app's queue of request
  messages, which the guard keeps moving when the body was not read (see below). HTTP/2 passes
  through untouched: its ``send`` waits for the client's flow-control window.

* **An answer given before the request body was read to its end** (413 from Content-Length, 401
  before the body is read) would leave the rest of the body in the connection. The guard first
  reads and drops the rest, up to ``max_drain_bytes`` of body in all and ``drain_s`` seconds,
  so that a client that sends its whole request before it reads gets the answer, and the
  connection stays usable. Past either bound the answer says ``Connection: close`` and hypercorn
  closes the connection after it; meanwhile the guard reads the app's queue, so that hypercorn's
  ``http.disconnect`` always finds room.

* **Shutdown** (:meth:`BodyGuard.stop`): a request whose body is still on its way has not
  started; it is refused at once with 503 ``shutting-down`` and ``Connection: close`` instead of
  holding the shutdown for the grace period. Requests whose body has arrived are left to finish,
  and drains stop.

A client that stops sending altogether is hypercorn's to time out (``read_timeout``, set by
:mod:`stockade.api.server`): it closes the connection without an answer.
"""

from __future__ import annotations

import time

import trio

from stockade.api.accounting import Accounting, request_id
from stockade.api.asgi import ASGIApp, Message, Receive, Scope, Send
from stockade.api.problems import problem_document

__all__ = ["BodyGuard"]

_HTTP1 = frozenset({"1.0", "1.1"})
_CLOSE = (b"connection", b"close")
_REFUSED = problem_document(
    503, "shutting-down", "Shutting down", "the server is stopping; send the request again"
)


class BodyGuard:
    """Wraps ``app`` (see the module docstring). ``accounting`` counts the guard's own answers."""

    def __init__(
        self, app: ASGIApp, accounting: Accounting, *, max_drain_bytes: int, drain_s: float
    ) -> None:
        self.app = app
        self.accounting = accounting
        self.max_drain_bytes = max_drain_bytes
        self.drain_s = drain_s
        self.stopping = False
        self._exchanges: set[_Exchange] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("http_version") not in _HTTP1:
            return await self.app(scope, receive, send)
        exchange = _Exchange(self, receive, send)
        self._exchanges.add(exchange)
        try:
            with exchange.cancel_scope:
                await self.app(scope, exchange.receive, exchange.send)
        finally:
            self._exchanges.discard(exchange)
        if exchange.cancel_scope.cancelled_caught and not exchange.answering:
            await exchange.refuse(scope)

    def stop(self) -> None:
        """The server is stopping: refuse the requests still waiting for their body (each gets
        503 and its connection closes) and cut drains short; from now on nothing is drained.
        Requests whose body has arrived carry on. Never blocks."""
        self.stopping = True
        for exchange in self._exchanges:
            if exchange.drain is not None:
                exchange.drain.cancel()
            elif not exchange.answering and not exchange.ended:
                exchange.cancel_scope.cancel()


class _Exchange:
    """One request and its answer, seen from between hypercorn and the app."""

    __slots__ = (
        "_receive", "_send", "answering", "cancel_scope", "complete", "drain", "ended", "guard",
        "received",
    )  # fmt: skip

    def __init__(self, guard: BodyGuard, receive: Receive, send: Send) -> None:
        self.guard = guard
        self._receive = receive
        self._send = send
        self.cancel_scope = trio.CancelScope()
        self.complete = False  # the app was handed the body's last message
        self.ended = False  # ... or the client went away
        self.received = 0  # body bytes handed to the app
        self.answering = False  # the app started its response
        self.drain: trio.CancelScope | None = None  # while the guard drops the rest of the body

    async def receive(self) -> Message:
        """hypercorn's ``receive``, noting how far the body got. Blocks until the client sends."""
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = self.ended = True
        else:
            self.ended = True  # http.disconnect
        if self.drain is not None and (self.ended or self.received > self.guard.max_drain_bytes):
            self.drain.cancel()  # the app's own reader may have taken the message the drain awaits
        return message

    async def send(self, message: Message) -> None:
        """hypercorn's ``send``; a response's last message is sent shielded, for the connection's
        bookkeeping must run to its end. A response started before the body was read to its end
        first waits for the drain (at most ``drain_s``)."""
        if message["type"] == "http.response.start":
            self.answering = True
            if not self.complete:
                await self._drain()
                if not self.complete:
                    headers = [*message.get("headers", ()), _CLOSE]
                    message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            if not self.complete:
                return await self._end_unread(message)
            with trio.CancelScope(shield=True):
                return await self._send(message)
        await self._send(message)

    async def _drain(self) -> None:
        """Read and drop the rest of the body, up to the guard's bounds. Cancelled by
        :meth:`BodyGuard.stop`, and by :meth:`receive` when another reader (Quart's) gets the
        last message."""
        if self.ended or self.guard.stopping:
            return
        with trio.move_on_after(self.guard.drain_s) as self.drain:
            while not self.ended and self.received <= self.guard.max_drain_bytes:
                await self.receive()
        self.drain = None

    async def _end_unread(self, message: Message) -> None:
        """Send the last message of an answer that said ``Connection: close``: hypercorn closes
        the connection in this call, and first waits for room in the app's queue to hand it
        ``http.disconnect``; a task reads that queue meanwhile. Both are shielded, the reader
        too, so that a cancellation from outside cannot leave the send waiting for room."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._discard)
                await self._send(message)
                nursery.cancel_scope.cancel()

    async def _discard(self) -> None:
        while not self.ended:
            await self.receive()

    async def refuse(self, scope: Scope) -> None:
        """Answer 503 ``shutting-down`` for a request cancelled by :meth:`BodyGuard.stop`."""
        started = time.perf_counter()
        supplied = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        rid = request_id(supplied.decode("latin-1"))
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", b"%d" % len(_REFUSED)),
            (b"retry-after", b"1"),
            (b"x-request-id", rid.encode("latin-1")),
        ]
        await self.send({"type": "http.response.start", "status": 503, "headers": headers})
        await self.send({"type": "http.response.body", "body": _REFUSED})
        self.guard.accounting.answered(scope["method"], "unmatched", 503, started, rid)
