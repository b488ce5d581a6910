"""Traces of the HTTP API, caught by OpenTelemetry's in-memory exporter: a request span, the
engine call's span under it and the journal commit's under that, the same through the order
fast path and through Quart; and, with tracing off, no OpenTelemetry at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from stockade._open import open_engine_and_store
from stockade.api.app import ApiSettings, create_app
from stockade.api.server import tracing_requested
from stockade.api.tracing import Tracing
from stockade.persistence.memory import MemoryStore
from tests.unit.test_api_fastpath import asgi_post, order

TOKEN = "trace-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = (b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode())


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def app(exporter: InMemorySpanExporter) -> AsyncIterator[Any]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = MemoryStore()
    opened = open_engine_and_store(store=store, durability="durable", record_commits=True)
    async with opened as (engine, _):
        await engine.set_stock("tee", 5)
        await engine.set_stock("cap", 5)
        app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False),
                         tracing=Tracing(provider))  # fmt: skip
        app.config["TEST_ENGINE"] = engine
        async with app.test_app():
            exporter.clear()
            yield app


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def own_id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


@pytest.mark.parametrize("chunked", [False, True], ids=["fast-path", "quart"])
async def test_an_order_is_a_request_an_engine_call_and_a_commit(app, exporter, chunked):
    status, headers, body = await asgi_post(
        app, order([("tee", 2), ("cap", 1)], hold_seconds=600), chunked=chunked,
        headers=[TRACEPARENT, (b"x-request-id", b"req-7")], key=TOKEN,
    )  # fmt: skip
    assert status == 201
    spans = by_name(exporter)
    assert set(spans) == {"POST /v1/orders", "stockade.place_order", "stockade.journal.commit"}
    request = spans["POST /v1/orders"]
    engine = spans["stockade.place_order"]
    commit = spans["stockade.journal.commit"]
    # the caller's traceparent is the request's parent; the rest hang below it
    assert {trace_of(s) for s in spans.values()} == {TRACE_ID}
    assert parent_of(request) == int(PARENT_ID, 16)
    assert parent_of(engine) == own_id(request)
    assert parent_of(commit) == own_id(engine)
    assert request.kind == SpanKind.SERVER
    assert request.attributes is not None
    assert dict(request.attributes) == {
        "http.request.method": "POST", "url.scheme": "http", "network.protocol.version": "1.1",
        "http.route": "/v1/orders", "http.response.status_code": 201,
        "stockade.request_id": headers["x-request-id"],
    }  # fmt: skip
    assert headers["x-request-id"] == "req-7"
    assert engine.attributes is not None
    assert dict(engine.attributes) == {
        "stockade.outcome": "reserved", "stockade.order_id": body["id"], "stockade.sku_count": 2,
    }  # fmt: skip
    # the commit that made the order durable happened inside the engine call
    assert commit.attributes is not None and commit.attributes["stockade.batch_events"] == 1
    assert commit.start_time is not None and commit.end_time is not None
    assert engine.start_time is not None and engine.end_time is not None
    assert engine.start_time <= commit.start_time <= commit.end_time <= engine.end_time
    assert request.status.status_code == engine.status.status_code == StatusCode.UNSET


@pytest.mark.parametrize("chunked", [False, True], ids=["fast-path", "quart"])
async def test_a_refused_order_has_its_outcome_and_no_commit(app, exporter, chunked):
    status, _, _ = await asgi_post(app, order([("tee", 9)]), chunked=chunked, key=TOKEN)
    assert status == 409
    spans = by_name(exporter)
    assert set(spans) == {"POST /v1/orders", "stockade.place_order"}
    engine = spans["stockade.place_order"]
    assert engine.attributes is not None
    assert dict(engine.attributes) == {"stockade.outcome": "out-of-stock", "stockade.sku_count": 1}
    # a refusal is the caller's problem, not the server's: no error status
    assert engine.status.status_code == StatusCode.UNSET
    assert spans["POST /v1/orders"].parent is None  # no traceparent: a trace of its own


async def test_an_unexpected_error_is_an_error_on_both_spans(app, exporter, monkeypatch):
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.config["STOCKADE_ENGINE"], "place_order", broken)
    status, _, _ = await asgi_post(app, order([("tee", 1)]), key=TOKEN)
    assert status == 500
    spans = by_name(exporter)
    engine = spans["stockade.place_order"]
    assert engine.attributes is not None and engine.attributes["stockade.outcome"] == "error"
    assert engine.status.status_code == StatusCode.ERROR
    assert [event.name for event in engine.events] == ["exception"]
    assert spans["POST /v1/orders"].status.status_code == StatusCode.ERROR


async def test_quart_routes_trace_their_engine_calls(app, exporter):
    client = app.test_client()
    placed = await client.post("/v1/orders", json={"lines": [{"sku": "tee", "qty": 1}],
                                                   "hold_seconds": 60}, headers=ADMIN)  # fmt: skip
    order_id = (await placed.get_json())["id"]
    exporter.clear()
    assert (await client.post(f"/v1/orders/{order_id}/confirm", headers=ADMIN)).status_code == 200
    spans = by_name(exporter)
    assert set(spans) == {
        "POST /v1/orders/<order_id>/confirm", "stockade.confirm", "stockade.journal.commit",
    }  # fmt: skip
    engine = spans["stockade.confirm"]
    assert engine.attributes is not None
    assert dict(engine.attributes) == {
        "stockade.outcome": "confirmed", "stockade.order_id": order_id, "stockade.sku_count": 1,
    }  # fmt: skip
    assert parent_of(spans["stockade.journal.commit"]) == own_id(engine)
    exporter.clear()
    put = await client.put("/v1/products/tee", json={"on_hand": 10}, headers=ADMIN)
    assert put.status_code == 200
    spans = by_name(exporter)
    assert set(spans) == {
        "PUT /v1/products/<sku>", "stockade.set_stock", "stockade.journal.commit",
    }  # fmt: skip
    assert spans["stockade.set_stock"].attributes == {
        "stockade.outcome": "ok", "stockade.sku_count": 1,
    }  # fmt: skip


async def test_location_and_cart_routes_trace_their_engine_calls(app, exporter):
    client = app.test_client()
    placed = await client.post("/v1/orders", json={"lines": [{"sku": "tee", "qty": 1}],
                                                   "hold_seconds": 60}, headers=ADMIN)  # fmt: skip
    order_id = (await placed.get_json())["id"]
    ok, one = {"stockade.outcome": "ok"}, {"stockade.sku_count": 1}
    held = {"stockade.outcome": "reserved", "stockade.order_id": order_id, **one}
    calls = [
        ("PUT", "/v1/locations/shop", {"name": "", "priority": 1, "active": True},
         "stockade.set_location", ok),
        ("PATCH", "/v1/locations/shop", {"priority": 2}, "stockade.update_location", ok),
        ("PUT", "/v1/channels/web", {"locations": ["shop"]}, "stockade.set_channel", ok),
        ("PUT", "/v1/products/tee/locations/shop", {"on_hand": 2}, "stockade.set_stock",
         {**ok, **one}),
        ("POST", "/v1/transfers", {"sku": "tee", "qty": 1, "source": "shop",
                                   "destination": "default"}, "stockade.transfer", {**ok, **one}),
        ("PATCH", f"/v1/orders/{order_id}", {"lines": [{"sku": "tee", "qty": 2}]},
         "stockade.change_order", held),
        ("POST", f"/v1/orders/{order_id}/extend", {"hold_seconds": 600}, "stockade.extend", held),
    ]  # fmt: skip
    for method, url, body, name, attributes in calls:
        exporter.clear()
        response = await client.open(url, method=method, json=body, headers=ADMIN)
        assert response.status_code in (200, 201), (url, await response.get_data())
        spans = by_name(exporter)
        route = next(span for span in spans if span.startswith(method))
        assert set(spans) == {route, name, "stockade.journal.commit"}, url
        assert spans[name].attributes == attributes, url
        assert parent_of(spans[name]) == own_id(spans[route])
        assert parent_of(spans["stockade.journal.commit"]) == own_id(spans[name])


async def test_an_unmatched_request_is_named_by_its_method(app, exporter):
    response = await app.test_client().get("/nowhere")
    assert response.status_code == 404
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET"
    assert span.attributes is not None and "http.route" not in span.attributes


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "shop"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
    ],
)
def test_tracing_is_on_only_when_the_environment_asks(environ, wanted):
    assert tracing_requested(environ) is wanted


NO_TRACING = """
import json, sys
import trio
import stockade
from stockade.api.app import ApiSettings, create_app
from stockade.api.server import _open_tracing
from tests.unit.test_api_fastpath import asgi_post, order

async def main():
    assert _open_tracing() is None
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("tee", 5)
        app = create_app(engine, ApiSettings(admin_token="t", log_requests=True))
        async with app.test_app():
            for chunked in (False, True):
                status, _, _ = await asgi_post(app, order([("tee", 1)]), chunked=chunked,
                                               key="t")
                assert status == 201, status
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))

trio.run(main)
"""


def test_tracing_off_imports_no_opentelemetry():
    """Without the OTEL_* variables, serving orders through both paths never imports
    OpenTelemetry: nothing of it can run on the order path."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", NO_TRACING], capture_output=True, text=True,
                          env=environ, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
