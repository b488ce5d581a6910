"""The sale's rules over HTTP (design.md §13): ``PUT``/``GET /v1/products/{sku}/rules``, the
product with whether it is on sale, and their OpenAPI paths and problem types."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from quart import Blueprint, Response

from stockade.api.accounting import traced
from stockade.api.auth import requires
from stockade.api.routing import current_engine as _engine
from stockade.api.routing import current_tracing as _tracing
from stockade.api.routing import json_response as _json
from stockade.api.routing import read_body as _body
from stockade.api.schemas import PutRules
from stockade.engine.models import ProductRules, StockLevel

__all__ = ["TYPES", "LimitExceededProblem", "NotOnSaleProblem", "Product", "paths", "rules"]

rules = Blueprint("rules", __name__, url_prefix="/v1/products")


class Product(msgspec.Struct, frozen=True):
    """A product's stock (as StockLevel) and whether orders for it are taken now
    (``on_sale``: inside its sale window, or it has none)."""

    sku: str
    on_hand: int
    reserved: int
    available: int
    on_sale: bool

    @classmethod
    def of(cls, level: StockLevel, on_sale: bool) -> Product:
        return cls(level.sku, level.on_hand, level.reserved, level.available, on_sale)


class LineLimit(msgspec.Struct):
    sku: str
    rule: str
    limit: int
    counted: int
    requested: int


class LimitExceededProblem(msgspec.Struct):
    """409 ``limit-exceeded``: each refused line's rule (``per_order`` or ``per_customer``),
    its limit, the units already counted against it and the units asked for on top."""

    type: str
    title: str
    status: int
    detail: str
    limits: list[LineLimit]


class NotOnSaleProblem(msgspec.Struct):
    """409 ``not-on-sale``: the product and its sale window."""

    type: str
    title: str
    status: int
    detail: str
    sku: str
    opens_at: datetime | None
    closes_at: datetime | None


TYPES = (PutRules, ProductRules, Product, LimitExceededProblem, NotOnSaleProblem)


@rules.put("/<sku>/rules")
@requires("merchant")
async def put_rules(sku: str) -> Response:
    body = await _body(PutRules)
    setting = _engine().set_rules(
        sku,
        per_order=body.per_order,
        per_customer=body.per_customer,
        opens_at=body.opens_at,
        closes_at=body.closes_at,
        low_stock_at=body.low_stock_at,
    )
    return _json(await traced(_tracing(), "stockade.set_rules", setting, 1))


@rules.get("/<sku>/rules")
@requires("anyone")
async def get_rules(sku: str) -> Response:
    return _json(await _engine().rules(sku))


def paths(
    answer: Any, problems: Any, body: Any, sku: dict[str, Any], write: tuple[int, ...]
) -> dict[str, dict[str, Any]]:
    """These routes' paths for the OpenAPI document, from its helpers."""
    return {
        "/v1/products/{sku}/rules": {
            "put": {"operationId": "putRules",
                    "summary": "Replace a product's sale rules whole (limits, window, low stock)",
                    "parameters": [sku], "requestBody": body(PutRules),
                    "responses": {"200": answer(ProductRules, "the rules as kept"),
                                  **problems(404, *write)}},
            "get": {"operationId": "getRules", "summary": "A product's sale rules",
                    "parameters": [sku],
                    "responses": {"200": answer(ProductRules, "the rules (all null: none)"),
                                  **problems(404, 422)}}},
    }  # fmt: skip
