"""The HTTP order API: an app factory over an engine, a blueprint per resource.

Every route declares the role it needs with :func:`~stockade.api.auth.requires` (design.md §10;
see auth.py). Bodies are JSON (else 415), at most ``max_body_bytes`` (else 413), decoded and
validated by msgspec once. In front of it, :class:`~stockade.api.body_guard.BodyGuard` keeps a
body that was not read to its end from wedging its connection, and in front of that,
``POST /v1/orders`` is answered without Quart (:mod:`stockade.api.fastpath`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response, current_app, g, request
from quart_trio import QuartTrio

from stockade.api.accounting import Accounting, request_id, traced
from stockade.api.asgi import ASGIApp
from stockade.api.auth import KeyRing, Unauthorized, requires, route_access
from stockade.api.body_guard import BodyGuard
from stockade.api.bounds import AnonymousBounds, HoldBounds
from stockade.api.carts import carts
from stockade.api.fastpath import OrderFastPath
from stockade.api.feed import FeedCollector, FeedService, FeedSettings, feed
from stockade.api.history import history
from stockade.api.keys import ApiKey, ApiKeys, KeyPage, NewKey
from stockade.api.locations import locations
from stockade.api.metrics import Metrics
from stockade.api.openapi import docs_page, openapi_document
from stockade.api.ordering import answer_order
from stockade.api.port import BooksPort, EnginePort, LocalBooks, LocalEngine, OutboundPort
from stockade.api.problems import Problem, register_error_handlers
from stockade.api.returns import returns
from stockade.api.routing import anonymous_bounds
from stockade.api.routing import current_engine as _engine
from stockade.api.routing import current_tracing as _tracing
from stockade.api.routing import json_response as _json
from stockade.api.routing import read_body as _body
from stockade.api.rules import Product, rules
from stockade.api.schemas import Adjustment, CreateKey, PlaceOrder, PutStock
from stockade.api.sinks import sinks
from stockade.api.webhooks import webhooks
from stockade.engine.engine import Engine
from stockade.engine.validation import check_sku
from stockade.errors import EngineUnavailable, InvalidTransition
from stockade.outbound.service import Outbound, OutboundCollector
from stockade.persistence.keys import KeyTable, MemoryKeys
from stockade.persistence.sinks import SinkTable
from stockade.persistence.webhooks import MemoryWebhooks, WebhookTable

if TYPE_CHECKING:  # only imported when tracing is on
    from stockade.api.tracing import Tracing

__all__ = ["ApiSettings", "create_app"]


class ApiSettings(msgspec.Struct, frozen=True):
    """``admin_token`` is a merchant key (empty: none); ``public_holds`` lets anonymous callers
    place and cancel holds (design.md §10); ``key_refresh_s`` bounds how long a key made or
    revoked by another process takes to be seen. ``max_drain_bytes`` and ``drain_s`` bound how
    much of a body the app did not read is read and dropped before answering, to keep its
    connection usable (see :mod:`stockade.api.body_guard`); a body past them gets its answer with
    ``Connection: close``. ``bounds`` bound anonymous callers (public holds; see
    :mod:`stockade.api.bounds`)."""

    admin_token: str
    max_body_bytes: int = 64 * 1024
    log_requests: bool = True
    max_drain_bytes: int = 1024 * 1024
    drain_s: float = 2.0
    public_holds: bool = False
    key_refresh_s: float = 1.0
    feed: FeedSettings = msgspec.field(default_factory=FeedSettings)
    bounds: HoldBounds = msgspec.field(default_factory=HoldBounds)


products = Blueprint("products", __name__, url_prefix="/v1/products")
orders = Blueprint("orders", __name__, url_prefix="/v1/orders")
keys = Blueprint("keys", __name__, url_prefix="/v1/keys")
health = Blueprint("health", __name__)


@products.put("/<sku>")
@requires("merchant")
async def put_product(sku: str) -> Response:
    body = await _body(PutStock)
    engine = _engine()
    created = not await engine.has_product(sku)
    level = await traced(_tracing(), "stockade.set_stock", engine.set_stock(sku, body.on_hand), 1)
    return _json(level, 201 if created else 200)


@products.post("/<sku>/adjustments")
@requires("merchant")
async def adjust_product(sku: str) -> Response:
    body = await _body(Adjustment)
    adjusting = _engine().adjust_stock(sku, body.delta, body.reason, body.location)
    return _json(await traced(_tracing(), "stockade.adjust_stock", adjusting, 1))


@products.get("")
@requires("anyone")
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
    items = await _engine().products(after, limit)
    next_after = items[-1].sku if len(items) == limit else None
    return _json({"items": items, "next_after": next_after})


@products.get("/<sku>")
@requires("anyone")
async def get_product(sku: str) -> Response:
    engine = _engine()
    level = await engine.stock(sku, request.args.get("channel"))
    return _json(Product.of(level, await engine.on_sale(sku)))


@orders.post("")
@requires("service", public_holds=True)
async def place_order() -> Response:
    body = await _body(PlaceOrder)
    key = request.headers.get("Idempotency-Key")
    bounds: AnonymousBounds = current_app.config["STOCKADE_BOUNDS"]
    client = bounds.client(request.scope) if g.role == "anyone" else None
    answer = await answer_order(_engine(), body, key, g.request_id, g.role, _tracing(),
                                bounds=bounds, client=client)  # fmt: skip
    return Response(answer.body, status=answer.status, content_type=answer.content_type,
                    headers=answer.headers)  # fmt: skip


@orders.get("/<order_id>")
@requires("anyone")
async def get_order(order_id: str) -> Response:
    return _json(await _engine().get_order(order_id))


@orders.post("/<order_id>/cancel")
@requires("service", public_holds=True)
async def cancel_order(order_id: str) -> Response:
    if g.role != "anyone":
        return _json(await traced(_tracing(), "stockade.cancel", _engine().cancel(order_id)))
    anonymous_bounds()  # counts against the address's rate
    try:  # an anonymous caller may release a hold, never return a sale
        releasing = _engine().cancel(order_id, allow_return=False)
        return _json(await traced(_tracing(), "stockade.cancel", releasing))
    except InvalidTransition:
        raise Unauthorized(
            "cancelling a confirmed order is a return: it needs a service or merchant key"
        ) from None


def _keys() -> ApiKeys:
    keys: ApiKeys = current_app.config["STOCKADE_KEYS"]
    return keys


@keys.post("")
@requires("merchant")
async def create_key() -> Response:
    body = await _body(CreateKey)
    record, key = await _keys().create(body.role, body.name)
    shown = NewKey(**msgspec.structs.asdict(ApiKey.of(record)), key=key)
    response = _json(shown, 201)
    response.headers["Cache-Control"] = "no-store"
    return response


@keys.get("")
@requires("merchant")
async def list_keys() -> Response:
    return _json(KeyPage([ApiKey.of(record) for record in await _keys().keys()]))


@keys.delete("/<key_id>")
@requires("merchant")
async def revoke_key(key_id: str) -> Response:
    record = await _keys().revoke(key_id)
    if record is None:
        raise Problem(404, "key-not-found", "Key not found", f"no key {key_id!r}")
    return _json(ApiKey.of(record))


@health.get("/healthz")
@requires("anyone")
async def healthz() -> Response:
    return _json({"status": "ok"})


@health.get("/metrics")
@requires("anyone")
async def metrics() -> Response:
    observed: Metrics = current_app.config["STOCKADE_METRICS"]
    return Response(await observed.exposition(), content_type=CONTENT_TYPE_LATEST)


@health.get("/openapi.json")
@requires("anyone")
async def openapi() -> Response:
    return _json(current_app.config["STOCKADE_OPENAPI"])


@health.get("/docs")
@requires("anyone")
async def docs() -> Response:
    page = docs_page(current_app.config["STOCKADE_OPENAPI"])
    return Response(page, content_type="text/html; charset=utf-8")


@health.get("/readyz")
@requires("anyone")
async def readyz() -> Response:
    remote = current_app.config.get("STOCKADE_REMOTE")  # a front's link to its engine
    try:
        if remote is not None and not remote.connected:
            raise EngineUnavailable("the engine cannot be reached")
        journal = (await _engine().statistics()).journal
    except EngineUnavailable as exc:
        return _json({"ready": False, "journal_buffered": None, "detail": str(exc)}, 503)
    return _json({"ready": journal.healthy, "journal_buffered": journal.buffered},
                 200 if journal.healthy else 503)  # fmt: skip


def create_app(
    engine: Engine | EnginePort, settings: ApiSettings, key_table: KeyTable | None = None,
    tracing: Tracing | None = None, webhook_table: WebhookTable | None = None,
    outbound: OutboundPort | None = None, *, books: BooksPort | None = None,
    engine_series: Callable[[], Awaitable[bytes]] | None = None,
    sink_table: SinkTable | None = None,
) -> QuartTrio:  # fmt: skip
    """Build the app for ``engine``; nothing is global, so tests can make as many as they like.

    The app calls the engine through an :class:`~stockade.api.port.EnginePort`: an ``Engine``
    in this process is adapted by :class:`~stockade.api.port.LocalEngine` (at no cost on the
    hot path); a front passes a remote engine. ``app.config["STOCKADE_ENGINE"]`` is the port.
    API keys live in ``key_table`` (the store's: ``store.key_table()``; by default a table in
    memory). ``app.config["STOCKADE_KEYS"]`` is the :class:`ApiKeys` over it: the server runs
    its ``run`` to see keys that other processes make or revoke. ``tracing`` (None: off) makes
    spans of the requests and their engine calls (:mod:`stockade.api.tracing`); a route calls
    the engine through :func:`~stockade.api.accounting.traced`.
    ``app.config["STOCKADE_FEED"]`` is the :class:`~stockade.api.feed.FeedService` whose
    ``run`` feeds product streams. ``app.config["STOCKADE_OUTBOUND"]`` is ``outbound``, the
    :class:`~stockade.api.port.OutboundPort` the webhook and sink routes call (by default an
    :class:`~stockade.outbound.service.Outbound` over an engine in this process,
    ``webhook_table`` and ``sink_table``, each by default in memory; a front passes the engine
    process's): whoever owns the engine runs its ``run`` to deliver (:func:`~stockade.api.
    server.serve_app` does). ``books`` runs ``GET /v1/admin/check``
    (by default there is nothing to check: 409). ``engine_series`` (a front's) answers the
    engine process's own metrics, shown by ``/metrics`` instead of the engine's statistics read
    here (see :mod:`stockade.api.metrics`). Raises RuntimeError if a route declares no role,
    or for a remote engine without its ``outbound``."""
    port: EnginePort = LocalEngine(engine) if isinstance(engine, Engine) else engine
    local = port.engine if isinstance(port, LocalEngine) else None
    app = QuartTrio(__name__, static_folder=None)
    app.config["STOCKADE_ENGINE"] = port
    app.config["STOCKADE_BOOKS"] = LocalBooks(None) if books is None else books
    app.config["STOCKADE_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["STOCKADE_METRICS"] = observed = Metrics(port, remote_series=engine_series)
    app.config["STOCKADE_TRACING"] = tracing
    accounting = Accounting(observed, settings.log_requests, tracing)
    app.config["STOCKADE_AUTH"] = auth = KeyRing(
        settings.admin_token, public_holds=settings.public_holds
    )
    app.config["STOCKADE_KEYS"] = ApiKeys(
        MemoryKeys() if key_table is None else key_table, auth, refresh_s=settings.key_refresh_s
    )
    app.config["STOCKADE_BOUNDS"] = bounds = AnonymousBounds(settings.bounds)
    if outbound is None:
        if local is None:
            raise RuntimeError("an app over a remote engine needs the engine's outbound port")
        hooks = MemoryWebhooks() if webhook_table is None else webhook_table
        outbound = Outbound(local, hooks, sink_table, options=settings.feed.delivery,
                            sink_options=settings.feed.sinks)  # fmt: skip
    app.config["STOCKADE_OUTBOUND"] = outbound
    delivering = outbound if isinstance(outbound, Outbound) else None  # here, not elsewhere
    app.config["STOCKADE_FEED"] = service = FeedService(port, settings.feed)
    observed.register(FeedCollector(service, observed, delivering))
    if delivering is not None:
        observed.register(OutboundCollector(delivering))
    for blueprint in (products, orders, keys, health):
        app.register_blueprint(blueprint)
    app.register_blueprint(history)
    app.register_blueprint(locations)  # design.md §7
    app.register_blueprint(carts)  # design.md §8
    app.register_blueprint(returns)  # design.md §13: late confirms, returns
    app.register_blueprint(feed)  # design.md §9
    app.register_blueprint(webhooks)  # design.md §9
    app.register_blueprint(sinks)  # design.md §14
    app.register_blueprint(rules)  # design.md §13
    access = route_access(app)
    app.config["STOCKADE_OPENAPI"] = openapi_document(access, public_holds=settings.public_holds)
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

    app.config["STOCKADE_GUARD"] = guard = BodyGuard(
        cast(ASGIApp, app.asgi_app), accounting,
        max_drain_bytes=settings.max_drain_bytes, drain_s=settings.drain_s,
    )  # fmt: skip
    # POST /v1/orders skips the framework (see stockade/api/fastpath.py)
    app.asgi_app = OrderFastPath(  # type: ignore[method-assign,assignment]
        guard, port, accounting, settings.max_body_bytes, auth, access[("/v1/orders", "post")],
        tracing, bounds,
    )  # fmt: skip
    if tracing is not None:  # the request's span around everything
        app.asgi_app = tracing.middleware(app.asgi_app)  # type: ignore[method-assign,assignment,arg-type]
    return app
