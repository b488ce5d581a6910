"""The real server's stderr, with tracing off and on: every line is one JSON object, unexpected
exceptions included (with their request id and trace id), whoever logs them (our routes,
Quart, hypercorn); and spans really leave the process through OTLP/HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.otlp_sink import OtlpSink
from bench.server import Server

TOKEN = "log-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[2]


def traceparent(n: int) -> tuple[str, dict[str, str]]:
    """A trace id of our own and the header that makes it the request's."""
    trace_id = f"{n:032x}"
    return trace_id, {"traceparent": f"00-{trace_id}-{n:016x}-01"}


def python_path() -> str:
    """The repository first, so that the server subprocess finds ``tests``."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def log_lines(server: Server) -> list[dict[str, Any]]:
    """Every line the server wrote, each parsed as JSON (a line that is not fails the test)."""
    lines = []
    for text in server.log.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            pytest.fail(f"a log line that is not JSON: {text!r}")
        assert isinstance(lines[-1], dict), text
    return lines


@pytest.fixture(params=[False, True], ids=["tracing-off", "tracing-on"])
def faulty(request, tmp_path) -> Iterator[Server]:
    """The server with faults planted (see faulty_server.py), traces (when on) written to its
    stderr by the console exporter."""
    env = {"PYTHONPATH": python_path(), "OTEL_BSP_SCHEDULE_DELAY": "50"}
    if request.param:
        env["OTEL_TRACES_EXPORTER"] = "console"
    server = Server(tmp_path, TOKEN, env=env, module="tests.integration.faulty_server")
    server.start()
    yield server
    server.kill()


def order(sku: str) -> dict[str, Any]:
    return {"lines": [{"sku": sku, "qty": 1}], "hold_seconds": None}


async def test_every_log_line_is_json_unexpected_errors_included(faulty):
    tracing = faulty.extra_env.get("OTEL_TRACES_EXPORTER") == "console"
    placed_trace, placed = traceparent(1)
    crash_trace, crash = traceparent(2)
    confirm_trace, confirm = traceparent(3)
    async with httpx.AsyncClient(base_url=faulty.url, headers=ADMIN) as client:
        assert (await client.put("/v1/products/tee", json={"on_hand": 5})).status_code == 201
        ok = await client.post("/v1/orders", json=order("tee"),
                               headers={**placed, "X-Request-Id": "fast-ok"})  # fmt: skip
        assert ok.status_code == 201
        crashed = await client.post("/v1/orders", json=order("crash"),
                                    headers={**crash, "X-Request-Id": "fast-crash"})  # fmt: skip
        assert crashed.status_code == 500
        assert crashed.json()["request_id"] == "fast-crash"
        confirmed = await client.post(
            "/v1/orders/any/confirm", headers={**confirm, "X-Request-Id": "quart-crash"}
        )
        assert confirmed.status_code == 500
        assert confirmed.json()["request_id"] == "quart-crash"
        health = await client.get("/healthz", headers={"X-Request-Id": "explode-quart"})
        assert health.status_code == 500
        late = await client.post("/v1/orders", json=order("tee"),
                                 headers={"X-Request-Id": "explode-fast"})  # fmt: skip
        assert late.status_code == 201  # answered, then the fault
    assert faulty.stop() == 0
    lines = log_lines(faulty)
    logged = {(line.get("logger"), line.get("request_id")): line for line in lines
              if line.get("event") == "log"}  # fmt: skip
    errors = {
        ("stockade.api", "fast-crash"): crash_trace,  # the order route's own 500
        ("stockade.api", "quart-crash"): confirm_trace,  # a Quart route's 500
        ("stockade.api.app", "explode-quart"): None,  # Quart's own error log
        ("hypercorn.error", "explode-fast"): None,  # past the app: hypercorn's
    }
    for key, trace_id in errors.items():
        assert key in logged, (key, sorted(logged, key=str))
        line = logged[key]
        assert line["level"] == "ERROR" and "RuntimeError: planted fault" in line["exception"]
        if tracing and trace_id is not None:
            assert line["trace_id"] == trace_id
        elif not tracing:
            assert "trace_id" not in line
    requests = {line["id"]: line for line in lines if line.get("event") == "request"}
    assert requests["fast-ok"]["status"] == 201
    spans = [line for line in lines if "context" in line and "name" in line]
    if not tracing:
        assert spans == [] and "trace_id" not in requests["fast-ok"]
        return
    assert requests["fast-ok"]["trace_id"] == placed_trace
    placed_spans = {s["name"]: s for s in spans if s["context"]["trace_id"] == f"0x{placed_trace}"}
    assert set(placed_spans) == {
        "POST /v1/orders", "stockade.place_order", "stockade.journal.commit",
    }  # fmt: skip
    assert placed_spans["stockade.place_order"]["attributes"]["stockade.outcome"] == "confirmed"
    assert placed_spans["POST /v1/orders"]["attributes"]["stockade.request_id"] == "fast-ok"


async def test_spans_reach_an_otlp_collector(tmp_path):
    trace_id, header = traceparent(7)
    with OtlpSink(keep=True) as sink:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_SERVICE_NAME": "shop-stock"}
        server = Server(tmp_path, TOKEN, env=env)
        server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, headers=ADMIN) as client:
                await client.put("/v1/products/tee", json={"on_hand": 5})
                placed = await client.post("/v1/orders", json=order("tee"), headers=header)
                assert placed.status_code == 201
            assert server.stop(signal.SIGTERM) == 0  # exports what is left on the way out
        finally:
            server.kill()
    assert sink.paths == {"/v1/traces"}
    names: dict[str, str] = {}
    services = set()
    for body in sink.bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            services.add(attributes["service.name"])
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    if span.trace_id.hex() == trace_id:
                        names[span.name] = span.parent_span_id.hex()
    assert services == {"shop-stock"}
    assert set(names) == {"POST /v1/orders", "stockade.place_order", "stockade.journal.commit"}
    assert names["POST /v1/orders"] == f"{7:016x}"  # the caller's span is its parent
    assert all(json.loads(line) for line in server.log.read_text().splitlines())


def test_an_exporter_that_is_not_installed_stops_the_server_at_start(tmp_path):
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "zipkin", "STOCKADE_ADMIN_TOKEN": "t"}
    done = subprocess.run(
        [sys.executable, "-m", "stockade", "serve", "--database", "sqlite:///x.db"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    (line,) = [json.loads(text) for text in done.stderr.splitlines()]
    assert line["event"] == "failed" and "'zipkin'" in line["detail"]
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened
