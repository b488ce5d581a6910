"""``POST /v1/orders``, once: the answer to a decoded order, whichever way it came in.

The Quart route (:mod:`stockade.api.app`) and the ASGI fast path (:mod:`stockade.api.fastpath`)
each read and decode the body their own way, then both call :func:`answer_order`, so the engine
call, the error mapping and the documents are the same code for both.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from stockade.api.auth import PURCHASE_NEEDS_A_KEY, Role, Unauthorized
from stockade.api.bounds import AnonymousBounds
from stockade.api.port import EnginePort
from stockade.api.problems import Problem, internal_error, stockade_problem
from stockade.api.schemas import PlaceOrder
from stockade.errors import StockadeError

if TYPE_CHECKING:  # only imported when tracing is on
    from stockade.api.tracing import Tracing

__all__ = ["JSON", "PROBLEM_JSON", "ROUTE", "OrderAnswer", "answer_order", "refusal"]

ROUTE = "/v1/orders"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

log = logging.getLogger("stockade.api")
_encoder = msgspec.json.Encoder()


class OrderAnswer(NamedTuple):
    """What to answer: the status, the JSON document, its content type and any extra headers
    (``Retry-After`` on 503)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] | None


def refusal(error: StockadeError | Problem) -> OrderAnswer:
    """The answer to a refused order: its problem document."""
    status, document, headers = stockade_problem(error)
    return OrderAnswer(status, document, PROBLEM_JSON, headers)


async def answer_order(
    engine: EnginePort, order: PlaceOrder, idempotency_key: str | None, request_id: str, role: Role,
    tracing: Tracing | None = None, *, bounds: AnonymousBounds | None = None,
    client: str | None = None,
) -> OrderAnswer:  # fmt: skip
    """Place ``order`` for a caller of ``role`` (already authorized for the route) and say what
    to answer: 201 and the Order, or the problem document of a refusal (401 for an anonymous
    direct purchase, 409 out of stock with ``shortages``, 404 for an unknown product, location
    or channel, 422, 503 with ``Retry-After``...), or 500 quoting ``request_id`` for an
    unexpected error (logged with its traceback). With ``tracing`` on, the engine call is a
    ``stockade.place_order`` span. An anonymous caller (``role`` anyone) from address
    ``client`` is held to ``bounds``: its rate (429 ``too-many-requests``), units per line
    and hold length (422), and its open holds, counted by the engine (429
    ``too-many-holds``); each 429 with ``Retry-After``.

    Blocks as ``Engine.place_order`` does: in durable mode until the order is committed.
    Cancellable only while it waits for that commit (the order is placed all the same); the
    cancellation propagates.
    """
    bounded: dict[str, Any] = {}  # only an anonymous hold names a holder: keyed calls as ever
    if role == "anyone":
        if order.hold_seconds is None:
            return refusal(Unauthorized(PURCHASE_NEEDS_A_KEY))
        if bounds is not None:
            try:
                bounds.admit(client or "unknown")
                bounds.check_lines((line.sku, line.qty) for line in order.lines)
                bounds.check_hold(order.hold_seconds)
            except (Problem, StockadeError) as refused:
                return refusal(refused)
            bounded = {"holder": client or "unknown", "max_open_holds": bounds.bounds.max_open}
    try:
        placing = engine.place_order(
            [(line.sku, line.qty) for line in order.lines],
            hold_for=order.hold_seconds,
            idempotency_key=idempotency_key,
            location=order.location,
            channel=order.channel,
            customer=order.customer,
            reference=order.reference,
            metadata=order.metadata,
            **bounded,
        )
        if tracing is not None:
            placing = tracing.engine_call("stockade.place_order", placing, len(order.lines))
        placed = await placing
    except StockadeError as error:
        return refusal(error)
    except Exception:
        log.exception("unexpected error", extra={"request_id": request_id})
        return OrderAnswer(500, internal_error(request_id), PROBLEM_JSON, None)
    return OrderAnswer(201, _encoder.encode(placed), JSON, None)
