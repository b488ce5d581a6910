"""Errors as RFC 9457 ``application/problem+json`` responses, registered in one place."""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

import msgspec
from quart import Quart, Response, g
from werkzeug.exceptions import HTTPException

from stockade.errors import (
    EngineClosed,
    EngineRefused,
    EngineUnavailable,
    FeedGone,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    LimitExceeded,
    NotOnSale,
    OrderNotFound,
    OutOfStock,
    Overloaded,
    ReturnConflict,
    StockadeError,
    StockConflict,
    StoreUnavailable,
    TooManyHolds,
    UnknownChannel,
    UnknownLocation,
    UnknownProduct,
)

__all__ = [
    "Problem",
    "internal_error",
    "problem",
    "problem_document",
    "problem_kind",
    "register_error_handlers",
    "stockade_problem",
]

log = logging.getLogger("stockade.api")
_encoder = msgspec.json.Encoder()

#: error class -> (status, type slug, title)
_ERRORS: dict[type[StockadeError], tuple[int, str, str]] = {
    OutOfStock: (409, "out-of-stock", "Out of stock"),
    LimitExceeded: (409, "limit-exceeded", "Limit exceeded"),
    NotOnSale: (409, "not-on-sale", "Not on sale"),
    UnknownProduct: (404, "unknown-product", "Unknown product"),
    UnknownLocation: (404, "unknown-location", "Unknown location"),
    UnknownChannel: (404, "unknown-channel", "Unknown channel"),
    OrderNotFound: (404, "order-not-found", "Order not found"),
    InvalidTransition: (409, "invalid-transition", "Invalid order transition"),
    IdempotencyConflict: (409, "idempotency-conflict", "Idempotency key reused"),
    StockConflict: (409, "stock-conflict", "Stock conflict"),  # before its base, InvalidRequest
    ReturnConflict: (409, "return-conflict", "Return conflict"),  # likewise
    InvalidRequest: (422, "invalid-request", "Invalid request"),
    Overloaded: (503, "overloaded", "Overloaded"),
    EngineClosed: (503, "shutting-down", "Shutting down"),
    StoreUnavailable: (503, "store-unavailable", "Store unavailable"),
    EngineUnavailable: (503, "engine-unavailable", "Engine unavailable"),  # a front's engine
    EngineRefused: (503, "engine-unavailable", "Engine unavailable"),  # ... refusing its secret
    FeedGone: (410, "feed-gone", "Feed position gone"),
    TooManyHolds: (429, "too-many-holds", "Too many holds"),
}


class Problem(Exception):
    """Raised by a route to answer with a problem document (and ``headers``, if any)."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str,
        headers: dict[str, str] | None = None, **extra: Any,
    ) -> None:  # fmt: skip
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_document(status: int, slug: str, title: str, detail: str, **extra: Any) -> bytes:
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    body.update(extra)
    return _encoder.encode(body)


def internal_error(request_id: str) -> bytes:
    """The 500 document: no internals, only the request id to quote (the log has the rest)."""
    return problem_document(
        500, "internal", "Internal error",
        f"an unexpected error occurred; quote request id {request_id}",
        request_id=request_id,
    )  # fmt: skip


def problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:  # fmt: skip
    return Response(
        problem_document(status, slug, title, detail, **extra),
        status=status,
        content_type="application/problem+json",
        headers=headers,
    )


def _from_stockade(error: StockadeError) -> Response:
    status, document, headers = stockade_problem(error)
    return Response(document, status=status, content_type="application/problem+json",
                    headers=headers)  # fmt: skip


def problem_kind(error: StockadeError) -> tuple[int, str, str]:
    """The status, type slug and title that answer ``error``."""
    return next(
        (v for cls, v in _ERRORS.items() if isinstance(error, cls)),
        (500, "internal", "Internal error"),
    )


def stockade_problem(error: StockadeError | Problem) -> tuple[int, bytes, dict[str, str] | None]:
    """The status, problem document and extra headers that answer ``error``."""
    if isinstance(error, Problem):
        document = problem_document(error.status, error.slug, error.title, error.detail,
                                    **error.extra)  # fmt: skip
        return error.status, document, error.headers
    status, slug, title = problem_kind(error)
    extra: dict[str, Any] = {}
    headers = None
    if isinstance(error, OutOfStock):
        extra["shortages"] = [
            {"sku": sku, "requested": want, "available": have}
            for sku, (want, have) in sorted(error.shortages.items())
        ]
    elif isinstance(error, LimitExceeded):
        extra["limits"] = [
            {"sku": sku, "rule": rule, "limit": limit, "counted": counted, "requested": wanted}
            for sku, (rule, limit, counted, wanted) in sorted(error.limits.items())
        ]
    elif isinstance(error, NotOnSale):
        extra["sku"] = error.sku
        extra["opens_at"] = error.opens_at
        extra["closes_at"] = error.closes_at
    elif isinstance(
        error, Overloaded | EngineClosed | StoreUnavailable | EngineUnavailable | EngineRefused
    ):
        headers = {"Retry-After": "1"}
    elif isinstance(error, TooManyHolds):
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}
    return status, problem_document(status, slug, title, str(error), **extra), headers


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(Problem)
    async def on_problem(error: Problem) -> Response:
        return problem(error.status, error.slug, error.title, error.detail, error.headers,
                       **error.extra)  # fmt: skip

    @app.errorhandler(StockadeError)
    async def on_stockade(error: StockadeError) -> Response:
        return _from_stockade(error)

    @app.errorhandler(msgspec.DecodeError)
    async def on_malformed(error: msgspec.DecodeError) -> Response:
        if isinstance(error, msgspec.ValidationError):
            return problem(422, "invalid-request", "Invalid request", str(error))
        return problem(400, "malformed-json", "Malformed JSON", str(error))

    @app.errorhandler(HTTPException)
    async def on_http(error: HTTPException) -> Response:
        status = error.code or 500
        slug = (error.name or "error").lower().replace(" ", "-")
        headers = dict(error.get_headers()) if status == 405 else None
        if headers is not None:
            headers.pop("Content-Type", None)
        return problem(status, slug, error.name or "Error", error.description or "", headers)

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        request_id = g.get("request_id") or secrets.token_hex(8)  # the X-Request-Id answered
        log.exception("unexpected error", extra={"request_id": request_id})
        return Response(internal_error(request_id), status=500,
                        content_type="application/problem+json")  # fmt: skip
