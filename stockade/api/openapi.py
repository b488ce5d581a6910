"""The OpenAPI 3.1 document, its schemas generated from the msgspec types the API uses.

Each operation's ``security`` (and its 401/403 answers, and ``x-stockade-role``) comes from the
role its route declares (:func:`stockade.api.auth.requires`), never from this file."""

from __future__ import annotations

import html
from typing import Any

import msgspec

from stockade.api.auth import Access
from stockade.api.carts import TYPES as CART_TYPES
from stockade.api.history import paths as history_paths
from stockade.api.history import types as history_types
from stockade.api.keys import ApiKey, KeyPage, NewKey
from stockade.api.locations import TYPES as LOCATION_TYPES
from stockade.api.returns import TYPES as RETURN_TYPES
from stockade.api.rules import TYPES as RULE_TYPES
from stockade.api.rules import LimitExceededProblem, NotOnSaleProblem, Product
from stockade.api.rules import paths as rule_paths
from stockade.api.schemas import Adjustment, CreateKey, PlaceOrder, PutStock
from stockade.engine.models import Order, StockLevel
from stockade.engine.validation import KEY_PATTERN, MAX_KEY_LENGTH, MAX_SKU_LENGTH, SKU_PATTERN

__all__ = ["docs_page", "openapi_document"]


class Problem(msgspec.Struct):
    """An RFC 9457 problem document; ``shortages`` only for out-of-stock."""

    type: str
    title: str
    status: int
    detail: str


class Shortage(msgspec.Struct):
    sku: str
    requested: int
    available: int


class OutOfStockProblem(Problem):
    shortages: list[Shortage]


class ProductPage(msgspec.Struct):
    items: list[StockLevel]
    next_after: str | None


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    """``journal_buffered``: events not yet committed (null when the engine cannot be
    reached: a front's); ``detail``: why not ready, when that is known."""

    ready: bool
    journal_buffered: int | None
    detail: str | None = None


_TYPES = (PutStock, Adjustment, PlaceOrder, StockLevel, Order, Problem, OutOfStockProblem,
          ProductPage, Health, Readiness, CreateKey, ApiKey, NewKey, KeyPage,
          *LOCATION_TYPES, *CART_TYPES, *RETURN_TYPES, *RULE_TYPES)  # fmt: skip


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{kind.__name__}"}


def _answer(kind: type, description: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": _ref(kind)}}}


def _problems(*codes: int, conflict: str = "conflict") -> dict[str, Any]:
    """Problem answers for ``codes``; ``conflict`` describes what a 409 means here."""
    described = {
        400: "malformed JSON", 401: "no key, or one that is not valid",
        403: "a key whose role is too low",
        404: "not found", 409: conflict, 413: "body too large",
        415: "body not JSON", 422: "invalid input",
        503: "overloaded, shutting-down, store-unavailable or engine-unavailable (a front's"
             " engine cannot be reached): retry after Retry-After",
    }  # fmt: skip
    return {str(c): _answer(Problem, described[c], "application/problem+json") for c in codes}


def _order_problems(*codes: int) -> dict[str, Any]:
    """As _problems, where a 409 may be out of stock (a Problem with ``shortages``), over a
    product's limit (``limits``) or outside its sale window (``sku``, ``opens_at``,
    ``closes_at``)."""
    out = _problems(
        *codes,
        conflict="out of stock (with shortages), over a product's limit (limit-exceeded), "
        "outside its sale window (not-on-sale), or idempotency key reused",
    )
    out["409"]["content"]["application/problem+json"]["schema"] = {
        "anyOf": [_ref(OutOfStockProblem), _ref(LimitExceededProblem), _ref(NotOnSaleProblem),
                  _ref(Problem)]
    }  # fmt: skip
    return out


def _body(kind: type) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(kind)}}}


_SKU_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_SKU_LENGTH,
               "pattern": SKU_PATTERN}  # fmt: skip
_SKU = {"name": "sku", "in": "path", "required": True, "schema": _SKU_SCHEMA}
_ID = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}}
_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
               "pattern": KEY_PATTERN}  # fmt: skip
_KEY = {"name": "Idempotency-Key", "in": "header", "schema": _KEY_SCHEMA}
_KEY_ID = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
_WHO = {"anyone": "anyone", "service": "a service or merchant key", "merchant": "a merchant key"}
_WRITE = (400, 413, 415, 422, 503)


def _text(media: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _secure(operation: dict[str, Any], access: Access, public_holds: bool) -> None:
    """Give ``operation`` the security its route declares."""
    operation["x-stockade-role"] = access.role
    if access.role == "anyone":
        return
    operation["security"] = [{"bearer": []}]
    who = _WHO[access.role]
    operation["responses"] = responses = dict(operation["responses"])  # may be shared
    if access.public_holds and public_holds:
        operation["security"].append({})  # anonymous callers too (public holds)
        who += "; anonymous callers for a hold of their own (public holds)"
        responses["429"] = {
            "description": "an anonymous caller over a bound: its address's request rate "
            "(too-many-requests) or open holds (too-many-holds); retry after Retry-After",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
            "content": {"application/problem+json": {"schema": _ref(Problem)}},
        }
        if "422" in responses:
            responses["422"] = {**responses["422"], "description": "invalid input; for an "
                                "anonymous caller also a line over the units per line, or a "
                                "hold over the hold length, that public holds allow"}  # fmt: skip
    operation["summary"] += f" ({who})"
    responses.update({c: v for c, v in _problems(401, 403).items() if c not in responses})
    responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}


def _links(parameter: str, pointer: str, *operation_ids: str) -> dict[str, Any]:
    """OpenAPI links from an answer to ``operation_ids``, each given ``parameter`` from the
    answer's body at ``pointer`` (what a client, or schemathesis' state machine, calls next)."""
    return {
        operation_id[0].upper() + operation_id[1:]: {
            "operationId": operation_id,
            "parameters": {parameter: f"$response.body#{pointer}"},
        }
        for operation_id in operation_ids
    }


def _product_links() -> dict[str, Any]:
    """Links from a product's StockLevel: read it, adjust it, hold one unit of it. The hold's
    body is a literal with a runtime expression inside, which schemathesis evaluates; its
    extension makes that the whole body, not merged into a generated one (whose other lines
    could name the same sku)."""
    links = _links("sku", "/sku", "getProduct", "adjustProduct")
    links["PlaceOrder"] = {
        "operationId": "placeOrder",
        "requestBody": {"lines": [{"sku": "$response.body#/sku", "qty": 1}], "hold_seconds": 900},
        "x-schemathesis": {"merge_body": False},
    }
    return links


def _linked(answer: dict[str, Any], links: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "links": links}


def openapi_document(
    access: dict[tuple[str, str], Access] | None = None, *, public_holds: bool = False
) -> dict[str, Any]:
    """The document; ``access`` maps ``(path, method)`` to what each route declares
    (:func:`stockade.api.auth.route_access`), ``public_holds`` is the server's setting."""
    # Imported here, not at the top: these modules build their paths from this one's parts.
    from stockade.api.openapi_feed import FEED_TYPES, feed_paths
    from stockade.api.openapi_returns import add_paths as add_return_paths
    from stockade.api.openapi_stock import add_paths as add_stock_paths

    (_, components) = msgspec.json.schema_components(
        (*_TYPES, *history_types(), *FEED_TYPES), ref_template="#/components/schemas/{name}"
    )
    to_order = _links(
        "order_id", "/id", "getOrder", "confirmOrder", "cancelOrder", "changeOrder", "extendOrder"
    )
    order_change = {"parameters": [_ID], "responses": {
        "200": _linked(_answer(Order, "the order as it is now"), to_order),
        **_problems(404, 409, 503, conflict="not possible from the order's status")}}  # fmt: skip
    stock_conflict = "refused by the product's stock now (on-hand below reserved, or above max)"
    to_product = _product_links()
    paths: dict[str, dict[str, Any]] = {
        "/v1/products": {"get": {
            "operationId": "listProducts",
            "summary": "List products in sku order (paged)",
            "parameters": [
                {"name": "after", "in": "query", "schema": _SKU_SCHEMA},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            ],
            "responses": {"200": _answer(ProductPage, "a page"), **_problems(422)}}},
        "/v1/products/{sku}": {
            "get": {"operationId": "getProduct",
                    "summary": "A product's stock (a channel's view: over its locations only)",
                    "parameters": [_SKU, {"name": "channel", "in": "query",
                                          "schema": _SKU_SCHEMA}],
                    "responses": {"200": _answer(Product, "stock, and whether it is on sale"),
                                  **_problems(404, 422)}},
            "put": {"operationId": "putProduct",
                    "summary": "Create a product or overwrite its on-hand",
                    "parameters": [_SKU], "requestBody": _body(PutStock),
                    "responses": {
                        "200": _linked(_answer(StockLevel, "updated"), to_product),
                        "201": _linked(_answer(StockLevel, "created"), to_product),
                        **_problems(409, *_WRITE, conflict=stock_conflict)}}},
        "/v1/products/{sku}/adjustments": {"post": {
            "operationId": "adjustProduct",
            "summary": "Move on-hand by delta", "parameters": [_SKU],
            "requestBody": _body(Adjustment),
            "responses": {"200": _answer(StockLevel, "adjusted"),
                          **_problems(404, 409, *_WRITE, conflict=stock_conflict)}}},
        "/v1/orders": {"post": {
            "operationId": "placeOrder",
            "summary": "Place an order: every line or none",
            "parameters": [_KEY],
            "requestBody": _body(PlaceOrder),
            "responses": {"201": _linked(_answer(Order, "placed"), to_order),
                          **_order_problems(404, 409, *_WRITE)}}},
        "/v1/orders/{order_id}": {"get": {
            "operationId": "getOrder", "summary": "An order", "parameters": [_ID],
            "responses": {"200": _answer(Order, "the order"), **_problems(404)}}},
        "/v1/orders/{order_id}/confirm": {"post": {
            "operationId": "confirmOrder", "summary": "Confirm a hold", **order_change}},
        "/v1/orders/{order_id}/cancel": {"post": {
            "operationId": "cancelOrder", "summary": "Cancel or return", **order_change}},
        "/v1/keys": {
            "post": {"operationId": "createKey", "summary": "Make an API key (shown once)",
                     "requestBody": _body(CreateKey),
                     "responses": {"201": _answer(NewKey, "the key, shown this once"),
                                   **_problems(400, 413, 415, 422, 503)}},
            "get": {"operationId": "listKeys", "summary": "List the API keys (never their secrets)",
                    "responses": {"200": _answer(KeyPage, "every key, revoked ones too"),
                                  **_problems(503)}}},
        "/v1/keys/{key_id}": {"delete": {
            "operationId": "revokeKey", "summary": "Revoke an API key (idempotent)",
            "parameters": [_KEY_ID],
            "responses": {"200": _answer(ApiKey, "the key, revoked"), **_problems(404, 503)}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                             "responses": {"200": _answer(Health, "alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness: the store keeps up",
                            "responses": {"200": _answer(Readiness, "ready"),
                                          "503": _answer(Readiness, "not ready")}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": _text("text/plain", "the metrics")}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "responses": {"200": {
            "description": "OpenAPI 3.1",
            "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/docs": {"get": {"operationId": "docs", "summary": "This document as an HTML page",
                          "responses": {"200": _text("text/html", "the page")}}},
    }  # fmt: skip
    for path, operations in history_paths(_answer, _problems, _SKU).items():
        paths.setdefault(path, {}).update(operations)
    add_stock_paths(paths)
    add_return_paths(paths)
    paths.update(feed_paths())
    for path, operations in rule_paths(_answer, _problems, _body, _SKU, _WRITE).items():
        paths.setdefault(path, {}).update(operations)
    for path, operations in paths.items():
        for method, operation in operations.items():
            declared = (access or {}).get((path, method))
            if declared is not None:
                _secure(operation, declared, public_holds)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "stockade",
            "version": "1",
            "description": "Stock reservations that never oversell.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def docs_page(document: dict[str, Any]) -> str:
    """A self-contained HTML page listing the operations (no scripts, no external assets)."""
    rows = []
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            codes = ", ".join(op.get("responses", {}))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(op.get('summary', ''))}</td><td>{codes}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>stockade API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:.3em 1em}</style></head>"
        "<body><h1>stockade API</h1><p>The full description: "
        "<a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1). Routes that need a key "
        "take <code>Authorization: Bearer &lt;key&gt;</code>.</p><table><tr><th>method</th>"
        "<th>path</th><th>what</th><th>answers</th></tr>" + "".join(rows) + "</table></body></html>"
    )
