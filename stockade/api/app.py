"""The HTTP order API: an app factory over an engine, a blueprint per resource.

Merchant routes need ``Authorization: Bearer <token>`` (compared in constant time). Bodies are
JSON (else 415), at most ``max_body_bytes`` (else 413), decoded and validated by msgspec once.
In front of it, :class:`~stockade.api.guard.RequestGuard` keeps a body that was not read to its
end from wedging its connection, and in front of that, ``POST /v1/orders`` is answered without
Quart (:mod:`stockade.api.fastpath`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar, cast

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response, current_app, g, request
from quart_trio import QuartTrio

from stockade.api.accounting import Accounting, request_id
from stockade.api.fastpath import ASGIApp, OrderFastPath
from stockade.api.guard import RequestGuard
from stockade.api.metrics import Metrics
from stockade.api.openapi import docs_page, openapi_document
from stockade.api.ordering import answer_order
from stockade.api.problems import Problem, register_error_handlers
from stockade.api.schemas import Adjustment, PlaceOrder, PutStock, decoder
from stockade.engine.engine import Engine
from stockade.engine.validation import check_sku

__all__ = ["ApiSettings", "create_app"]

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


class ApiSettings(msgspec.Struct, frozen=True):
    """``max_drain_bytes`` and ``drain_s`` bound how much of a body the app did not read is
    read and dropped before answering, to keep its connection usable (see
    :mod:`stockade.api.guard`); a body past them gets its answer with ``Connection: close``."""

    admin_token: str
    max_body_bytes: int = 64 * 1024
    log_requests: bool = True
    max_drain_bytes: int = 1024 * 1024
    drain_s: float = 2.0


def _json(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status=status, content_type="application/json")


def _engine() -> Engine:
    engine: Engine = current_app.config["STOCKADE_ENGINE"]
    return engine


async def _body(kind: type[T]) -> T:
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "send the body as application/json")  # fmt: skip
    data = await request.get_data(as_text=False)
    return decoder(kind).decode(data)


def merchant(route: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Refuse the call without the admin token: 401 without credentials, 403 with wrong ones."""

    @wraps(route)
    async def checked(*args: Any, **kwargs: Any) -> Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "unauthorized", "Unauthorized",
                          "send Authorization: Bearer <admin token>")  # fmt: skip
        expected = current_app.config["STOCKADE_SETTINGS"].admin_token.encode()
        if not hmac.compare_digest(token.encode(), expected):
            raise Problem(403, "forbidden", "Forbidden", "the admin token is not valid")
        return await route(*args, **kwargs)

    return checked


products = Blueprint("products", __name__, url_prefix="/v1/products")
orders = Blueprint("orders", __name__, url_prefix="/v1/orders")
health = Blueprint("health", __name__)


@products.put("/<sku>")
@merchant
async def put_product(sku: str) -> Response:
    body = await _body(PutStock)
    engine = _engine()
    created = not engine.has_product(sku)
    return _json(await engine.set_stock(sku, body.on_hand), 201 if created else 200)


@products.post("/<sku>/adjustments")
@merchant
async def adjust_product(sku: str) -> Response:
    body = await _body(Adjustment)
    return _json(await _engine().adjust_stock(sku, body.delta, body.reason))


@products.get("")
async def list_products() -> Response:
    after = request.args.get("after")
    if after is not None:
        check_sku(after)
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise Problem(
            422, "invalid-request", "Invalid request", "limit must be an integer"
        ) from None
    items = _engine().products(after, limit)
    next_after = items[-1].sku if len(items) == limit else None
    return _json({"items": items, "next_after": next_after})


@products.get("/<sku>")
async def get_product(sku: str) -> Response:
    return _json(await _engine().stock(sku))


@orders.post("")
async def place_order() -> Response:
    body = await _body(PlaceOrder)
    key = request.headers.get("Idempotency-Key")
    answer = await answer_order(_engine(), body, key, g.request_id)
    return Response(answer.body, status=answer.status, content_type=answer.content_type,
                    headers=answer.headers)  # fmt: skip


@orders.get("/<order_id>")
async def get_order(order_id: str) -> Response:
    return _json(await _engine().get_order(order_id))


@orders.post("/<order_id>/confirm")
async def confirm_order(order_id: str) -> Response:
    return _json(await _engine().confirm(order_id))


@orders.post("/<order_id>/cancel")
async def cancel_order(order_id: str) -> Response:
    return _json(await _engine().cancel(order_id))


@health.get("/healthz")
async def healthz() -> Response:
    return _json({"status": "ok"})


@health.get("/metrics")
async def metrics() -> Response:
    registry = current_app.config["STOCKADE_METRICS"].registry
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@health.get("/openapi.json")
async def openapi() -> Response:
    return _json(current_app.config["STOCKADE_OPENAPI"])


@health.get("/docs")
async def docs() -> Response:
    page = docs_page(current_app.config["STOCKADE_OPENAPI"])
    return Response(page, content_type="text/html; charset=utf-8")


@health.get("/readyz")
async def readyz() -> Response:
    journal = _engine().statistics().journal
    return _json({"ready": journal.healthy, "journal_buffered": journal.buffered},
                 200 if journal.healthy else 503)  # fmt: skip


def create_app(engine: Engine, settings: ApiSettings) -> QuartTrio:
    """Build the app for ``engine``; nothing is global, so tests can make as many as they like."""
    app = QuartTrio(__name__)
    app.config["STOCKADE_ENGINE"] = engine
    app.config["STOCKADE_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["STOCKADE_METRICS"] = observed = Metrics(engine)
    accounting = Accounting(observed, settings.log_requests)
    app.config["STOCKADE_OPENAPI"] = openapi_document()
    for blueprint in (products, orders, health):
        app.register_blueprint(blueprint)
    register_error_handlers(app)

    @app.before_request
    async def start_clock() -> None:
        g.started = time.perf_counter()
        g.request_id = request_id(request.headers.get("X-Request-Id"))

    @app.after_request
    async def account(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        rid = g.get("request_id") or request_id(None)
        started = g.get("started", time.perf_counter())
        accounting.answered(request.method, route, response.status_code, started, rid)
        response.headers["X-Request-Id"] = rid
        return response

    app.config["STOCKADE_GUARD"] = guard = RequestGuard(
        cast(ASGIApp, app.asgi_app), accounting,
        max_drain_bytes=settings.max_drain_bytes, drain_s=settings.drain_s,
    )  # fmt: skip
    # POST /v1/orders skips the framework (see stockade/api/fastpath.py)
    app.asgi_app = OrderFastPath(  # type: ignore[method-assign,assignment]
        guard, engine, accounting, settings.max_body_bytes
    )
    return app
