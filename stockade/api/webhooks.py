"""``/v1/webhooks``: merchants subscribe URLs to the change feed (design.md §9).

``PUT /v1/webhooks/{id}`` ``{"url", "types", "secret", "batch"}`` creates (201) or replaces
(200) a subscription; ``types`` (event types, at least one, none twice) may be left out or null
for every type; ``batch`` (1 to 1000, default 1) is the most events one POST carries (see
:mod:`stockade.outbound.webhooks`). What ``url`` and ``secret`` accept:
:mod:`stockade.outbound.signing`. A new subscription delivers the events committed from then
on; a replaced one keeps its cursor.
``GET`` shows one or lists them (never the secret): the cursor (the last seq delivered), the
head (the newest event), the backlog between them, whether it is failing and its last error.
``DELETE`` removes one and stops its deliveries.

The routes are thin: they decode the body and call the server's
:class:`~stockade.api.port.OutboundPort` (``app.config["STOCKADE_OUTBOUND"]``): the
:class:`~stockade.outbound.service.Outbound` of the process that owns the engine (a front's
reaches it over the engine protocol), which
validates, changes the subscriptions and delivers them.
"""

from __future__ import annotations

from quart import Blueprint, Response

from stockade.api.auth import requires
from stockade.api.problems import Problem
from stockade.api.routing import current_outbound as _outbound
from stockade.api.routing import json_response as _answer
from stockade.api.routing import read_body
from stockade.api.schemas import PutWebhook
from stockade.outbound.views import WebhookView

__all__ = ["webhooks"]

webhooks = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


@webhooks.put("/<webhook_id>")
@requires("merchant")
async def put_webhook(webhook_id: str) -> Response:
    body = await read_body(PutWebhook)
    outbound = _outbound()
    saved = await outbound.put_webhook(webhook_id, body.url, body.types, body.secret, body.batch)
    return _answer(saved.webhook, 201 if saved.created else 200)


@webhooks.get("/<webhook_id>")
@requires("merchant")
async def get_webhook(webhook_id: str) -> Response:
    return _found(webhook_id, await _outbound().get_webhook(webhook_id))


@webhooks.get("")
@requires("merchant")
async def list_webhooks() -> Response:
    return _answer(await _outbound().list_webhooks())


@webhooks.delete("/<webhook_id>")
@requires("merchant")
async def delete_webhook(webhook_id: str) -> Response:
    return _found(webhook_id, await _outbound().delete_webhook(webhook_id))


def _found(webhook_id: str, view: WebhookView | None) -> Response:
    """``view``; 404 if there is none."""
    if view is None:
        raise Problem(404, "webhook-not-found", "Webhook not found", f"no webhook {webhook_id!r}")
    return _answer(view)
