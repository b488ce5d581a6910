"""``/v1/sinks``: merchants publish the change feed to a broker (design.md §14).

``PUT /v1/sinks/{id}`` ``{"url", "types"}`` creates (201) or replaces (200) a sink; ``types``
(event types, at least one, none twice) may be left out or null for every type. What ``url``
accepts: :mod:`stockade.outbound.sinkurl` (``nats://``, ``redis://``, ``amqp://``; anything
else is 422 with the reason). A new sink publishes the events committed from then on; a
replaced one keeps its cursor. ``GET`` shows one or lists them, the URL's password masked: the
cursor (the last seq the broker acknowledged), the head, the backlog between them, whether it
is failing and its last error. ``DELETE`` removes one and stops its publishing.

The routes are thin: they decode the body and call the server's
:class:`~stockade.outbound.service.Outbound` (``app.config["STOCKADE_OUTBOUND"]``).
"""

from __future__ import annotations

from quart import Blueprint, Response

from stockade.api.auth import requires
from stockade.api.problems import Problem
from stockade.api.routing import current_outbound as _outbound
from stockade.api.routing import json_response as _answer
from stockade.api.routing import read_body
from stockade.api.schemas import PutSink
from stockade.outbound.views import SinkView

__all__ = ["sinks"]

sinks = Blueprint("sinks", __name__, url_prefix="/v1/sinks")


@sinks.put("/<sink_id>")
@requires("merchant")
async def put_sink(sink_id: str) -> Response:
    body = await read_body(PutSink)
    saved = await _outbound().put_sink(sink_id, body.url, body.types)
    return _answer(saved.sink, 201 if saved.created else 200)


@sinks.get("/<sink_id>")
@requires("merchant")
async def get_sink(sink_id: str) -> Response:
    return _found(sink_id, await _outbound().get_sink(sink_id))


@sinks.get("")
@requires("merchant")
async def list_sinks() -> Response:
    return _answer(await _outbound().list_sinks())


@sinks.delete("/<sink_id>")
@requires("merchant")
async def delete_sink(sink_id: str) -> Response:
    return _found(sink_id, await _outbound().delete_sink(sink_id))


def _found(sink_id: str, view: SinkView | None) -> Response:
    """``view``; 404 if there is none."""
    if view is None:
        raise Problem(404, "sink-not-found", "Sink not found", f"no sink {sink_id!r}")
    return _answer(view)
