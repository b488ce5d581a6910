"""History and the books over HTTP (design.md §11): ``GET /v1/orders`` (service or merchant),
``GET /v1/products/{sku}/movements`` and ``GET /v1/admin/check`` (merchant).

Query parameters are declared once, as msgspec Structs, and decoded and validated at the
boundary; the OpenAPI parameters are generated from the same Structs (:func:`paths`), so the
document and the server agree. Timestamps are RFC 3339 with an offset.

The check runs through the app's :class:`~stockade.api.port.BooksPort` (in
``app.config["STOCKADE_BOOKS"]``): in one process, a reader of the engine's store of its own (see
:mod:`stockade.persistence.audit`); a front asks the engine. An app without a store (an engine
in memory) answers 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, Meta, UnsetType
from quart import Blueprint, Response, current_app, request

from stockade.api.auth import requires
from stockade.api.port import BooksPort, EnginePort
from stockade.api.problems import Problem
from stockade.engine.models import Movement, Order, OrderStatus
from stockade.engine.validation import MAX_CUSTOMER_LENGTH
from stockade.errors import InvalidRequest, OrderNotFound
from stockade.persistence.books import BooksReport

__all__ = ["MovementPage", "OrderPage", "history", "paths", "types"]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()

#: An order id as a cursor: visible ASCII (ids are hex; older stores' may be any such text).
ORDER_ID_PATTERN = r"^[\x21-\x7e]{1,64}(?!\n)$"
_MAX_SEQ = 2**63 - 1
Limit = Annotated[int, Meta(ge=1, le=1000, description="items per page")]


class OrdersQueryParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``GET /v1/orders``: newest first; ``created_after`` / ``created_before`` are exclusive;
    ``after`` is the ``next_after`` of the previous page; ``customer`` one customer's only."""

    # Left out is UNSET, never None: a query string has no null, so "?status=null" is the
    # text "null", refused (422) like any other value that is not a status.
    status: OrderStatus | UnsetType = UNSET
    created_after: Annotated[datetime, Meta(tz=True)] | UnsetType = UNSET
    created_before: Annotated[datetime, Meta(tz=True)] | UnsetType = UNSET
    after: Annotated[str, Meta(pattern=ORDER_ID_PATTERN)] | UnsetType = UNSET
    limit: Limit = 100
    customer: Annotated[str, Meta(min_length=1, max_length=MAX_CUSTOMER_LENGTH)] | UnsetType = UNSET


class MovementQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``GET /v1/products/{sku}/movements``: in ``seq`` order, after the ``next_after`` of the
    previous page."""

    after: Annotated[int, Meta(ge=0, le=_MAX_SEQ)] | UnsetType = UNSET  # "null" is refused
    limit: Limit = 100


class CheckQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``GET /v1/admin/check``: how many findings to list (all are counted)."""

    limit: Annotated[int, Meta(ge=0, le=1000, description="findings to list")] = 100


class OrderPage(msgspec.Struct):
    items: list[Order]
    next_after: str | None


class MovementPage(msgspec.Struct):
    items: list[Movement]
    next_after: int | None


def types() -> tuple[type, ...]:
    """The schema types these routes answer with, for the document's components."""
    return (OrderPage, MovementPage, BooksReport)


history = Blueprint("history", __name__)


def _engine() -> EnginePort:
    engine: EnginePort = current_app.config["STOCKADE_ENGINE"]
    return engine


def _query(kind: type[T]) -> T:
    """The request's query parameters as ``kind`` (msgspec.ValidationError, a 422, if not).
    A parameter given more than once is refused (422), never read as its first value."""
    args = request.args
    for name in args:
        if len(args.getlist(name)) > 1:
            raise Problem(422, "invalid-request", "Invalid request",
                          f"query parameter {name!r} is given more than once")  # fmt: skip
    return msgspec.convert(args.to_dict(), kind, strict=False)


def _given(value: T | UnsetType) -> T | None:
    """A query parameter's value, or None when it was left out."""
    return None if isinstance(value, UnsetType) else value


def _json(value: Any) -> Response:
    return Response(_encoder.encode(value), content_type="application/json")


@history.get("/v1/orders")
@requires("service")
async def list_orders() -> Response:
    query = _query(OrdersQueryParams)
    engine = _engine()
    after = _given(query.after)
    if after is not None:
        try:  # a cursor naming no order is a 404, as the order itself would be
            await engine.get_order(after)
        except OrderNotFound:
            raise Problem(404, "order-not-found", "Order not found",
                          f"after: no order {after!r}") from None  # fmt: skip
    items = await engine.list_orders(
        _given(query.status), _given(query.created_after), _given(query.created_before), after,
        query.limit, _given(query.customer),
    )  # fmt: skip
    return _json(OrderPage(items, items[-1].id if len(items) == query.limit else None))


@history.get("/v1/products/<sku>/movements")
@requires("merchant")
async def list_movements(sku: str) -> Response:
    query = _query(MovementQuery)
    items = await _engine().movements(sku, _given(query.after), query.limit)
    return _json(MovementPage(items, items[-1].seq if len(items) >= query.limit else None))


@history.get("/v1/admin/check")
@requires("merchant")
async def check_books() -> Response:
    query = _query(CheckQuery)
    books: BooksPort = current_app.config["STOCKADE_BOOKS"]
    try:
        report = await books.check_books(query.limit)
    except InvalidRequest as exc:
        raise Problem(409, "nothing-to-check", "Nothing to check", str(exc)) from None
    return _json(report)


# -- the OpenAPI paths ----------------------------------------------------------------------


def _parameters(kind: type) -> list[dict[str, Any]]:
    """The query parameters of ``kind``, with the schema msgspec enforces for each."""
    (_, components) = msgspec.json.schema_components([kind])
    out = []
    for name, schema in components[kind.__name__]["properties"].items():
        schema = dict(schema)
        options = schema.pop("anyOf", None)
        if options is not None:  # X | None: a parameter left out is the None
            (schema_of_x,) = [o for o in options if o != {"type": "null"}]
            schema = {**schema_of_x, **schema}
        if schema.get("default", 0) is None:
            del schema["default"]
        out.append({"name": name, "in": "query", "schema": schema})
    return out


def paths(answer: Any, problems: Any, sku: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """These routes' paths for the OpenAPI document; ``answer`` and ``problems`` are the
    document's helpers, ``sku`` its sku path parameter."""
    return {
        "/v1/orders": {"get": {
            "operationId": "listOrders",
            "summary": "List orders, newest first (paged; filter by status, creation time and "
                       "customer)",
            "parameters": _parameters(OrdersQueryParams),
            "responses": {"200": answer(OrderPage, "a page"),
                          **problems(404, 422, 503)}}},
        "/v1/products/{sku}/movements": {"get": {
            "operationId": "listMovements",
            "summary": "A product's movements ledger, in seq order (paged)",
            "parameters": [sku, *_parameters(MovementQuery)],
            "responses": {"200": answer(MovementPage, "a page"),
                          **problems(404, 422, 503)}}},
        "/v1/admin/check": {"get": {
            "operationId": "checkBooks",
            "summary": "Check the books: stock, holds and orders against the movements ledger",
            "parameters": _parameters(CheckQuery),
            "responses": {"200": answer(BooksReport, "what the check found"),
                          **problems(409, 422, 503,
                                     conflict="nothing to check: the server keeps no store")}}},
    }  # fmt: skip
