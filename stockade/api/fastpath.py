"""``POST /v1/orders`` answered at the ASGI level, beside (not instead of) the Quart app.

Placing orders is the one route a flash sale hammers, and Quart's request and response objects,
routing and hooks cost more per request than the engine does. This wrapper answers that route
straight from the ASGI messages with the same decoder, engine call, problem documents, metrics,
request id, log line and key check (:func:`~stockade.api.auth.authorize`, from the route's own
declaration: no database read) as the Quart route. Anything it does not handle itself goes to Quart
unchanged, with the body it already read replayed: a body that is not JSON, too large, sent
without a length, or does not decode (Quart then gives the same 400/413/415/422 as before).
Every other route is Quart's; the Quart order route stays, for the requests handed over.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from stockade.api.auth import Access, Guard, authorize
from stockade.api.logs import log_event
from stockade.api.metrics import Metrics
from stockade.api.problems import Problem, internal_error, stockade_problem
from stockade.api.schemas import PlaceOrder, decoder
from stockade.engine.engine import Engine
from stockade.errors import StockadeError

__all__ = ["ASGIApp", "OrderFastPath"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROUTE = "/v1/orders"
log = logging.getLogger("stockade.api")
_encoder = msgspec.json.Encoder()
_decode_order = decoder(PlaceOrder)


class OrderFastPath:
    def __init__(
        self, app: ASGIApp, engine: Engine, metrics: Metrics, max_body_bytes: int,
        log_requests: bool, guard: Guard, access: Access,
    ) -> None:  # fmt: skip
        self.app = app
        self.engine = engine
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.log_requests = log_requests
        self.guard = guard
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != ROUTE or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        content_type = length = key = request_id = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"idempotency-key":
                key = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
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
        body, more = await self._read(receive, int(length))
        try:
            order = _decode_order.decode(body)
        except msgspec.DecodeError:
            return await self.app(scope, _replay(body, more, receive), send)
        request_id = request_id or secrets.token_hex(8)
        headers = [(b"x-request-id", request_id.encode("latin-1"))]
        try:
            authorize(self.guard, authorization, self.access,
                      anonymous_ok=order.hold_seconds is not None)  # fmt: skip
            placed = await self.engine.place_order(
                [(line.sku, line.qty) for line in order.lines],
                hold_for=order.hold_seconds,
                idempotency_key=key,
            )
        except (StockadeError, Problem) as error:
            status, document, extra = stockade_problem(error)
            content = b"application/problem+json"
            headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
        except Exception:
            log.exception("unexpected error", extra={"request_id": request_id})
            status, content = 500, b"application/problem+json"
            document = internal_error(request_id)
        else:
            status, content, document = 201, b"application/json", _encoder.encode(placed)
        headers += [(b"content-type", content), (b"content-length", b"%d" % len(document))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": document})
        self._account(status, time.perf_counter() - started, request_id)

    async def _read(self, receive: Receive, length: int) -> tuple[bytes, bool]:
        """Read up to ``length`` bytes of body: (the bytes, whether the client sent more)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size <= length:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks), more

    def _account(self, status: int, seconds: float, request_id: str) -> None:
        self.metrics.record("POST", ROUTE, status, seconds)
        if self.log_requests:
            log_event("request", id=request_id, method="POST", route=ROUTE, status=status,
                      ms=round(seconds * 1000, 2))  # fmt: skip


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
