"""The OpenAPI parts of late payments and returns (design.md §13), built with
:mod:`stockade.api.openapi`'s parts; ``openapi_document`` merges them in. The types they name
are in the document's components (``returns.TYPES``)."""

from __future__ import annotations

from typing import Any

from stockade.api.openapi import _ID, _KEY, _WRITE, _answer, _linked, _links, _order_problems, _ref
from stockade.api.schemas import ConfirmOrder, ReturnUnits
from stockade.engine.models import Order

__all__ = ["add_paths"]


def add_paths(paths: dict[str, dict[str, Any]]) -> None:
    """Give ``paths``' confirm its optional body and answers, and add the returns route."""
    to_order = _links("order_id", "/id", "getOrder", "cancelOrder", "returnUnits")
    confirmed = {"200": _linked(_answer(Order, "the order as it is now"), to_order),
                 **_order_problems(404, 409, *_WRITE)}  # fmt: skip
    confirmed["409"]["description"] = (
        "the order is cancelled, or expired (without late), or late and out of stock (with "
        "shortages; nothing changes)"
    )
    paths["/v1/orders/{order_id}/confirm"]["post"].update({
        "summary": "Confirm a hold; late: an expired one whose units are available now",
        "parameters": [_ID],
        "requestBody": {"required": False, "description": "May be left out (late: false)",
                        "content": {"application/json": {"schema": _ref(ConfirmOrder)}}},
        "responses": confirmed,
    })  # fmt: skip
    returned = {"200": _answer(Order, "the order after the return (cancelled once every unit "
                                      "is back)"),
                **_order_problems(404, 409, *_WRITE)}  # fmt: skip
    returned["409"]["description"] = (
        "the order is not confirmed (a hold, or every unit already back), the lines ask for "
        "more units than it bought and has not returned yet or for a sku it lacks "
        "(return-conflict), or the idempotency key was used for another request"
    )
    paths["/v1/orders/{order_id}/returns"] = {"post": {
        "operationId": "returnUnits",
        "summary": "Take back some units of a confirmed order (restocked, or written off)",
        "parameters": [_ID, _KEY],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": _ref(ReturnUnits)}}},
        "responses": returned,
    }}  # fmt: skip
