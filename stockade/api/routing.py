"""What every route module uses: the app's engine and tracing, JSON answers, and bodies read
and decoded once. The blueprints live in their own modules (app.py, locations.py, carts.py...)
and all take these from here, so none of them imports another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from quart import Response, current_app, g, request

from stockade.api.bounds import AnonymousBounds
from stockade.api.port import EnginePort, OutboundPort
from stockade.api.problems import Problem
from stockade.api.schemas import decoder

if TYPE_CHECKING:  # only imported when tracing is on
    from stockade.api.tracing import Tracing

__all__ = [
    "anonymous_bounds",
    "current_engine",
    "current_outbound",
    "current_tracing",
    "json_response",
    "read_body",
    "read_optional_body",
]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def json_response(value: Any, status: int = 200) -> Response:
    """``value`` encoded as JSON (msgspec Structs included)."""
    return Response(_encoder.encode(value), status=status, content_type="application/json")


def current_engine() -> EnginePort:
    """The engine of the app serving this request (its port: see :mod:`stockade.api.port`)."""
    engine: EnginePort = current_app.config["STOCKADE_ENGINE"]
    return engine


def current_outbound() -> OutboundPort:
    """The deliveries (webhooks, sinks) of the app's engine, which the ``/v1/webhooks`` and
    ``/v1/sinks`` routes call (its port: see :mod:`stockade.api.port`)."""
    outbound: OutboundPort = current_app.config["STOCKADE_OUTBOUND"]
    return outbound


def current_tracing() -> Tracing | None:
    """The app's tracing, for :func:`~stockade.api.accounting.traced`: None when off."""
    tracing: Tracing | None = current_app.config["STOCKADE_TRACING"]
    return tracing


def anonymous_bounds() -> AnonymousBounds | None:
    """For an anonymous caller (role ``anyone`` on a public-holds route): count the request
    against its address's rate (TooManyRequests, 429, over it) and return the bounds its body
    must keep to; None for a caller with a key, who is not bounded."""
    if g.get("role") != "anyone":
        return None
    bounds: AnonymousBounds = current_app.config["STOCKADE_BOUNDS"]
    bounds.admit(bounds.client(request.scope))
    return bounds


async def read_body(kind: type[T]) -> T:
    """The request's JSON body as ``kind``: 415 unless it is sent as JSON; msgspec.DecodeError
    (400 malformed, 422 invalid: see problems.py) unless it decodes. Waits for the body (at
    most ``max_body_bytes``, else 413); cancellable."""
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "send the body as application/json")  # fmt: skip
    data = await request.get_data(as_text=False)
    return decoder(kind).decode(data)


async def read_optional_body(kind: type[T], default: T) -> T:
    """As :func:`read_body` for a route whose body may be left out: ``default`` when the
    request has none (an empty body, whatever its content type)."""
    data = await request.get_data(as_text=False)
    if not data:
        return default
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "send the body as application/json")  # fmt: skip
    return decoder(kind).decode(data)
