"""The change feed's, the webhooks' and the sinks' part of /openapi.json (merged by
:func:`stockade.api.openapi.openapi_document`, which imports this module when it builds the
document: this module uses its helpers)."""

from __future__ import annotations

from typing import Any

import msgspec

from stockade.api.feed import MAX_SEQ, EventPage
from stockade.api.openapi import _SKU, _SKU_SCHEMA, _answer, _body, _linked, _links, _problems
from stockade.api.schemas import PutSink, PutWebhook
from stockade.engine.models import EVENT_TYPES
from stockade.outbound.views import SinkPage, SinkView, WebhookPage, WebhookView

__all__ = ["FEED_TYPES", "FeedGoneProblem", "feed_paths"]


class FeedGoneProblem(msgspec.Struct):
    """410: a position the feed cannot serve; ``first`` and ``last`` are the oldest and newest
    seq it keeps (both 0 when it keeps no feed)."""

    type: str
    title: str
    status: int
    detail: str
    first: int
    last: int


#: The schemas this part adds to the document's components.
FEED_TYPES = (EventPage, PutWebhook, WebhookView, WebhookPage, PutSink, SinkView, SinkPage,
              FeedGoneProblem)  # fmt: skip

_SEQ = {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}
_TYPE = "|".join(t.replace(".", r"\.") for t in EVENT_TYPES)
_TYPES = {
    "name": "types", "in": "query", "description": "only these event types (comma-separated)",
    "schema": {"type": "string", "pattern": rf"^(?:{_TYPE})(?:,(?:{_TYPE}))*(?!\n)$"},
}  # fmt: skip


def _stream(description: str, event: dict[str, Any], data: str) -> dict[str, Any]:
    """An answer of Server-Sent Events; the schema describes each event (OpenAPI 3.1), its
    ``data`` the JSON of the ``data`` component."""
    each = {"type": "object", "required": ["data", "event"], "properties": {
        "id": {"type": "string", "pattern": r"^[0-9]+$"}, "event": event,
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"$ref": f"#/components/schemas/{data}"}},
        "retry": {"type": "integer", "minimum": 0}}}  # fmt: skip
    return {"description": description, "content": {"text/event-stream": {"schema": each}}}


_EVENTS = _stream("the events, one message each (id: the seq, event: the type)",
                  {"enum": list(EVENT_TYPES)}, "Event")  # fmt: skip
_LEVELS = _stream("the product's stock level, now and as it changes", {"const": "stock"},
                  "StockLevel")  # fmt: skip
_BUSY = {
    "description": "too many streams open (or the server is stopping): retry later",
    "headers": {"Retry-After": {"schema": {"type": "string"}}},
    **{k: v for k, v in _problems(503)["503"].items() if k == "content"},
}


def _gone(description: str) -> dict[str, Any]:
    answer = _answer(FeedGoneProblem, description, "application/problem+json")
    return {"410": answer}


def _subscriptions(
    path: str, kind: str, name: str, put: type, view: type, page: type, summary: str
) -> dict[str, dict[str, Any]]:
    """The paths of one kind of subscription to the change feed (webhooks, sinks)."""
    ident = {"name": f"{kind}_id", "in": "path", "required": True, "schema": _SKU_SCHEMA}
    to_one = _links(f"{kind}_id", "/id", f"get{name}", f"delete{name}")
    return {
        path: {"get": {
            "operationId": f"list{name}s", "summary": f"List the {kind}s",
            "responses": {"200": _answer(page, f"every {kind}"), **_problems(503)}}},
        f"{path}/{{{kind}_id}}": {
            "put": {"operationId": f"put{name}", "summary": summary,
                    "parameters": [ident], "requestBody": _body(put),
                    "responses": {
                        "200": _linked(_answer(view, "replaced"), to_one),
                        "201": _linked(_answer(view, "created"), to_one),
                        **_problems(400, 413, 415, 422, 503),
                        **_gone("the server keeps no change feed")}},
            "get": {"operationId": f"get{name}",
                    "summary": f"A {kind}: its cursor, backlog and last error",
                    "parameters": [ident],
                    "responses": {"200": _answer(view, f"the {kind}"),
                                  **_problems(404, 422, 503)}},
            "delete": {"operationId": f"delete{name}", "summary": f"Remove a {kind}",
                       "parameters": [ident],
                       "responses": {"200": _answer(view, "removed"),
                                     **_problems(404, 422, 503)}}},
    }  # fmt: skip


def feed_paths() -> dict[str, dict[str, Any]]:
    """The paths of /v1/events, the streams, /v1/webhooks and /v1/sinks."""
    gone = _gone("events after this position were pruned, it is beyond the newest event, or "
                 "the server keeps no feed")  # fmt: skip
    return {
        "/v1/events": {"get": {
            "operationId": "listEvents", "summary": "A page of the change feed",
            "parameters": [
                {"name": "after", "in": "query", "schema": _SEQ,
                 "description": "the seq after which to read (0: from the oldest kept)"},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                _TYPES,
            ],
            "responses": {"200": _answer(EventPage, "a page"), **gone, **_problems(422)}}},
        "/v1/events/stream": {"get": {
            "operationId": "streamEvents",
            "summary": "The change feed as Server-Sent Events (resumes from Last-Event-ID)",
            "parameters": [
                {"name": "after", "in": "query", "schema": _SEQ,
                 "description": "the seq after which to start (default: from now)"},
                {"name": "Last-Event-ID", "in": "header",
                 "schema": {"type": "string", "pattern": r"^[0-9]{1,18}(?!\n)$"},
                 "description": "the last seq received (sent by a reconnecting EventSource)"},
                _TYPES,
            ],
            "responses": {"200": _EVENTS, **gone, **_problems(422), "503": _BUSY}}},
        "/v1/products/{sku}/stream": {"get": {
            "operationId": "streamProduct",
            "summary": "A product's stock level as Server-Sent Events, as it changes",
            "parameters": [_SKU],
            "responses": {"200": _LEVELS, **_problems(404, 422), "503": _BUSY,
                          **_gone("the server keeps no change feed")}}},
        **_subscriptions("/v1/webhooks", "webhook", "Webhook", PutWebhook, WebhookView,
                         WebhookPage, "Subscribe a URL to the change feed (create or replace)"),
        **_subscriptions("/v1/sinks", "sink", "Sink", PutSink, SinkView, SinkPage,
                         "Publish the change feed to a broker (create or replace)"),
    }  # fmt: skip
