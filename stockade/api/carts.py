"""Carts over HTTP (design.md §8): changing a held order's lines and extending its hold.

Both take an ``Idempotency-Key`` header: the same key with the same request applies once and
answers the order as it is now; with another request, 409 ``idempotency-conflict``. Both need a
service or merchant key, or, with ``serve --public-holds``, none: they act on reserved orders
only (anything else is 409 ``invalid-transition``), so an anonymous caller can do no more than
edit or extend a hold whose id it has (design.md §10).
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from stockade.api.accounting import traced
from stockade.api.auth import requires
from stockade.api.routing import (
    anonymous_bounds,
    current_engine,
    current_tracing,
    json_response,
    read_body,
)
from stockade.api.schemas import ChangeOrder, ExtendHold

__all__ = ["TYPES", "carts"]

#: The request bodies of these routes, for the OpenAPI document's components.
TYPES = (ChangeOrder, ExtendHold)

carts = Blueprint("carts", __name__, url_prefix="/v1/orders")


@carts.patch("/<order_id>")
@requires("service", public_holds=True)
async def change_order(order_id: str) -> Response:
    """Replace a held order's lines, all or nothing (409 out-of-stock with ``shortages``
    leaves it as it was). Waits until the edit is durable. An anonymous caller is bounded
    (rate, units per line: :mod:`stockade.api.bounds`)."""
    bounds = anonymous_bounds()
    body = await read_body(ChangeOrder)
    if bounds is not None:
        bounds.check_lines((line.sku, line.qty) for line in body.lines)
    changing = current_engine().change_order(
        order_id,
        [(line.sku, line.qty) for line in body.lines],
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return json_response(await traced(current_tracing(), "stockade.change_order", changing))


@carts.post("/<order_id>/extend")
@requires("service", public_holds=True)
async def extend_hold(order_id: str) -> Response:
    """Hold the order until ``hold_seconds`` from now, capped at its maximum lifetime: the
    answer shows the deadline granted (409 once the cap is reached). An anonymous caller is
    bounded (rate, hold length: :mod:`stockade.api.bounds`)."""
    bounds = anonymous_bounds()
    body = await read_body(ExtendHold)
    if bounds is not None:
        bounds.check_hold(body.hold_seconds)
    extending = current_engine().extend(
        order_id, body.hold_seconds, idempotency_key=request.headers.get("Idempotency-Key")
    )
    return json_response(await traced(current_tracing(), "stockade.extend", extending))
