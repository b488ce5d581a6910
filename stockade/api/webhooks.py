"""``/v1/webhooks``: merchants subscribe URLs to the change feed (design.md §9).

``PUT /v1/webhooks/{id}`` ``{"url", "types", "secret"}`` creates (201) or replaces (200) a
subscription; ``types`` (event types, at least one, none twice) may be left out or null for
every type. What ``url`` and ``secret`` accept: :mod:`stockade.api.signing`. A new subscription
delivers the events committed from then on; a replaced one keeps its cursor. ``GET`` shows one
or lists them (never the secret): the cursor (the last seq delivered), the head (the newest
event), the backlog between them, whether it is failing and its last error. ``DELETE`` removes
one and stops its deliveries. Delivery itself: :mod:`stockade.api.delivery`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import msgspec
from quart import Blueprint, Response, current_app

from stockade.api.auth import requires
from stockade.api.delivery import Subscription, Webhooks
from stockade.api.problems import Problem
from stockade.api.routing import json_response as _answer
from stockade.api.routing import read_body
from stockade.api.schemas import PutWebhook
from stockade.api.signing import check_url, secret_key
from stockade.engine.orders import from_timestamp
from stockade.engine.validation import check_location_id
from stockade.errors import InvalidRequest

__all__ = ["WebhookPage", "WebhookView", "webhooks"]


class WebhookView(msgspec.Struct):
    """A subscription as the API shows it (never its secret). ``cursor``: every wanted event
    up to this seq was delivered; ``head``: the newest event; ``backlog``: the events between."""

    id: str
    url: str
    types: list[str] | None
    cursor: int
    head: int
    backlog: int
    failing: bool
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookPage(msgspec.Struct):
    items: list[WebhookView]


webhooks = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


def _service() -> Webhooks:
    service: Webhooks = current_app.config["STOCKADE_FEED"].webhooks
    return service


def _view(subscription: Subscription, head: int | None) -> WebhookView:
    record = subscription.record
    error_at = subscription.last_error_at
    now = head or 0
    return WebhookView(
        record.id, record.url, None if record.types is None else list(record.types),
        subscription.cursor, now, max(now - subscription.cursor, 0), subscription.failing,
        subscription.last_error, None if error_at is None else from_timestamp(error_at),
        from_timestamp(record.created_at), from_timestamp(record.updated_at),
    )  # fmt: skip


@webhooks.put("/<webhook_id>")
@requires("merchant")
async def put_webhook(webhook_id: str) -> Response:
    check_location_id(webhook_id, what="webhook id")
    body = await read_body(PutWebhook)
    check_url(body.url)
    key = secret_key(body.secret)
    types = None if body.types is None else tuple(body.types)
    if types is not None and len(set(types)) != len(types):
        raise InvalidRequest("types: an event type is named twice")
    service = _service()
    subscription, created = await service.put(webhook_id, body.url, types, key, body.secret)
    return _answer(_view(subscription, service.engine.feed_head), 201 if created else 200)


@webhooks.get("/<webhook_id>")
@requires("merchant")
async def get_webhook(webhook_id: str) -> Response:
    return await _one(webhook_id, Webhooks.get)


@webhooks.get("")
@requires("merchant")
async def list_webhooks() -> Response:
    service = _service()
    head = service.engine.feed_head
    return _answer(WebhookPage([_view(s, head) for s in await service.all()]))


@webhooks.delete("/<webhook_id>")
@requires("merchant")
async def delete_webhook(webhook_id: str) -> Response:
    return await _one(webhook_id, Webhooks.delete)


async def _one(
    webhook_id: str, act: Callable[[Webhooks, str], Awaitable[Subscription | None]]
) -> Response:
    """``act`` on the subscription ``webhook_id`` and show it; 404 if there is none."""
    check_location_id(webhook_id, what="webhook id")
    service = _service()
    subscription = await act(service, webhook_id)
    if subscription is None:
        raise Problem(404, "webhook-not-found", "Webhook not found", f"no webhook {webhook_id!r}")
    return _answer(_view(subscription, service.engine.feed_head))
