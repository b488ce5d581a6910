"""Late payments and returns over HTTP (design.md §13).

``POST /v1/orders/{id}/confirm`` takes an optional body ``{"late": true}``: a payment that
arrived after its hold expired confirms the order if its units are available now (409
``out-of-stock`` with ``shortages`` if not; nothing changes). Without a body it is the plain
confirm of §3.

``POST /v1/orders/{id}/returns`` ``{"lines": [{"sku", "qty"}], "restock": bool}`` takes units of
a confirmed order back: restocked where they were sold from, or (``"restock": false``) written
off. It takes an ``Idempotency-Key`` header: the same key with the same return answers the order
as it is now and moves nothing; with another, 409 ``idempotency-conflict``. Returning more than
was bought and not yet returned, or a sku the order does not have, is 409 ``return-conflict``
(the body is valid; the order refuses it); an order that is not confirmed (a hold, or one whose
every unit is back) is 409 ``invalid-transition``. Both need a
service or merchant key, never an anonymous one (design.md §10).
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from stockade.api.accounting import traced
from stockade.api.auth import requires
from stockade.api.routing import (
    current_engine,
    current_tracing,
    json_response,
    read_body,
    read_optional_body,
)
from stockade.api.schemas import ConfirmOrder, ReturnUnits

__all__ = ["TYPES", "returns"]

#: The request bodies of these routes, for the OpenAPI document's components.
TYPES = (ConfirmOrder, ReturnUnits)

returns = Blueprint("returns", __name__, url_prefix="/v1/orders")

_NOT_LATE = ConfirmOrder()


@returns.post("/<order_id>/confirm")
@requires("service")
async def confirm_order(order_id: str) -> Response:
    """Confirm a hold (late: an expired one whose units are there now). Waits until the
    confirm is durable."""
    body = await read_optional_body(ConfirmOrder, _NOT_LATE)
    confirming = current_engine().confirm(order_id, late=body.late)
    return json_response(await traced(current_tracing(), "stockade.confirm", confirming))


@returns.post("/<order_id>/returns")
@requires("service")
async def return_units(order_id: str) -> Response:
    """Take some units of a confirmed order back; answers the order after the return, once
    durable."""
    body = await read_body(ReturnUnits)
    returning = current_engine().return_units(
        order_id,
        [(line.sku, line.qty) for line in body.lines],
        restock=body.restock,
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return json_response(await traced(current_tracing(), "stockade.return_units", returning))
