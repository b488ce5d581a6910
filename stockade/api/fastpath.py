"""``POST /v1/orders`` answered at the ASGI level, beside (not instead of) the Quart app.

Placing orders is the one route a flash sale hammers, and Quart's request and response objects,
routing and hooks cost more per request than the engine does. This wrapper answers that route
straight from the ASGI messages: it reads and decodes the body itself, then answers with
:func:`~stockade.api.ordering.answer_order` and accounts with
:class:`~stockade.api.accounting.Accounting`, as the Quart route does. Anything it does not
handle itself goes to the app it wraps (the request guard, then Quart) unchanged, with the body
it already read replayed: a body that is not JSON, too large, sent without a length, that comes
in pieces, or does not decode (Quart then gives the same 400/413/415/422 as before). Every other
route is Quart's; the Quart order route stays, for the requests handed over.

It sits in front of the request guard (:mod:`stockade.api.body_guard`) and needs none of it, which
keeps the guard's cost (a cancel scope is ~10 us) off the hot path: it answers only a body that
arrived whole in its first message, read to its end; it never cancels itself; and a body that
comes in pieces (a slow or stalled client) goes to the guarded path, where a shutdown refuses
it. Only a client that sends the head and then not one byte of its body waits here, bounded by
the server's read timeout.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from stockade.api.accounting import Accounting, request_id
from stockade.api.asgi import ASGIApp, Message, Receive, Scope, Send
from stockade.api.auth import Access, KeyRing, authorize
from stockade.api.bounds import AnonymousBounds
from stockade.api.ordering import ROUTE, answer_order, refusal
from stockade.api.port import EnginePort
from stockade.api.problems import Problem
from stockade.api.schemas import PlaceOrder, decoder

if TYPE_CHECKING:  # only imported when tracing is on
    from stockade.api.tracing import Tracing

__all__ = ["OrderFastPath"]

_decode_order = decoder(PlaceOrder)


class OrderFastPath:
    """Wraps the Quart ``app``; ``accounting`` is the one the Quart routes use; ``auth`` and
    ``access`` check the caller's key as the Quart route's declaration does
    (:func:`~stockade.api.auth.authorize`); ``tracing``, when on, makes the engine call a span
    (the request's span is :class:`~stockade.api.tracing.TracingMiddleware`'s, around this);
    ``bounds`` bound anonymous callers (:mod:`stockade.api.bounds`)."""

    def __init__(
        self, app: ASGIApp, engine: EnginePort, accounting: Accounting, max_body_bytes: int,
        auth: KeyRing, access: Access, tracing: Tracing | None = None,
        bounds: AnonymousBounds | None = None,
    ) -> None:  # fmt: skip
        self.app = app
        self.engine = engine
        self.accounting = accounting
        self.max_body_bytes = max_body_bytes
        self.auth = auth
        self.access = access
        self.tracing = tracing
        self.bounds = bounds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTE or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        content_type = length = key = supplied_id = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
            elif name == b"x-request-id":
                supplied_id = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value
        if (
            content_type is None
            or content_type.split(b";", 1)[0].strip().lower() != b"application/json"
            or length is None
            or not length.isdigit()
            or int(length) > self.max_body_bytes
        ):
            return await self.app(scope, receive, send)
        size = int(length)
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away: nobody to answer
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if more and len(body) < size:  # in pieces: the guarded path's
            return await self.app(scope, _replay(body, more, receive), send)
        while more and len(body) <= size:  # the end of the body, queued right behind it
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            order = _decode_order.decode(body)
        except msgspec.DecodeError:
            return await self.app(scope, _replay(body, more, receive), send)
        rid = request_id(supplied_id)
        try:
            role = authorize(self.auth, authorization, self.access,
                             anonymous_ok=order.hold_seconds is not None)  # fmt: skip
        except Problem as refused:
            answer = refusal(refused)
        else:
            bounds = self.bounds
            client = bounds.client(scope) if role == "anyone" and bounds is not None else None
            answer = await answer_order(self.engine, order, key, rid, role, self.tracing,
                                        bounds=bounds, client=client)  # fmt: skip
        headers = [(b"x-request-id", rid.encode("latin-1"))]
        if answer.headers:
            headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
        headers += [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", b"%d" % len(answer.body)),
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        self.accounting.answered("POST", ROUTE, answer.status, started, rid)


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A receive that hands out ``body`` first, then whatever the client still sends."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
