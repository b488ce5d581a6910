"""Log records as JSON lines: the formatter, and what an unexpected error leaves in the log and
in its answer (the request's own id, and its trace id when tracing is on)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import stockade
import stockade.api.server
from stockade.api.app import ApiSettings, create_app
from stockade.api.logs import JsonFormatter, JsonHandler, set_request_id
from stockade.api.server import ServerSettings
from stockade.api.tracing import Tracing
from stockade.cli import main
from tests.unit.test_api_fastpath import asgi_post, order

TOKEN = "log-token"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = (b"traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode())


def record(message: str, **extra: Any) -> logging.LogRecord:
    try:
        raise ValueError("the cause")
    except ValueError:
        exc_info = sys.exc_info()
    made = logging.LogRecord("stockade.api", logging.ERROR, __file__, 1, message, (), exc_info)
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_json_line_with_its_traceback():
    line = JsonFormatter().format(record("unexpected %s", request_id="r-1"))
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["event"] == "log" and fields["level"] == "ERROR"
    assert fields["logger"] == "stockade.api" and fields["message"] == "unexpected %s"
    assert fields["request_id"] == "r-1" and "trace_id" not in fields
    assert fields["exception"].startswith("Traceback")
    assert "ValueError: the cause" in fields["exception"]


def test_the_request_id_and_trace_ids_come_from_the_task_that_logs():
    formatter = JsonFormatter(trace_ids=lambda: ("t" * 32, "s" * 16))

    def in_a_request() -> dict[str, Any]:
        set_request_id("r-2")
        result: dict[str, Any] = json.loads(formatter.format(record("boom")))
        return result

    fields = contextvars.copy_context().run(in_a_request)
    assert (fields["request_id"], fields["trace_id"], fields["span_id"]) == (
        "r-2", "t" * 32, "s" * 16,
    )  # fmt: skip
    assert "request_id" not in json.loads(formatter.format(record("outside a request")))


@pytest.fixture
def json_log() -> Iterator[None]:
    """The stockade loggers' records as JSON lines on stderr, with trace ids."""
    handler = JsonHandler()
    handler.setFormatter(JsonFormatter(Tracing.current_ids))
    logger = logging.getLogger("stockade")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


@pytest.fixture
async def app() -> AsyncIterator[Any]:
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("tee", 5)
        tracing = Tracing(TracerProvider(shutdown_on_exit=False))
        app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False),
                         tracing=tracing)  # fmt: skip
        app.config["TEST_ENGINE"] = engine
        async with app.test_app():
            yield app


async def broken(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("chunked", [False, True], ids=["fast-path", "quart"])
async def test_an_unexpected_error_is_logged_with_its_request_and_trace(
    app, json_log, capsys, monkeypatch, chunked
):
    monkeypatch.setattr(app.config["STOCKADE_ENGINE"], "place_order", broken)
    status, headers, body = await asgi_post(app, order([("tee", 1)]), chunked=chunked,
                                            headers=[TRACEPARENT], key=TOKEN)  # fmt: skip
    assert status == 500
    (line,) = capsys.readouterr().err.splitlines()
    fields = json.loads(line)
    assert fields["message"] == "unexpected error" and "RuntimeError: boom" in fields["exception"]
    assert fields["request_id"] == headers["x-request-id"] == body["request_id"]
    assert fields["trace_id"] == TRACE_ID


async def test_a_quart_routes_500_quotes_the_id_its_answer_carries(app, json_log, capsys,
                                                                   monkeypatch):  # fmt: skip
    monkeypatch.setattr(app.config["STOCKADE_ENGINE"], "confirm", broken)
    client = app.test_client()
    response = await client.post("/v1/orders/some-order/confirm",
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "X-Request-Id": "req-confirm"})  # fmt: skip
    assert response.status_code == 500
    body = await response.get_json()
    assert response.headers["X-Request-Id"] == body["request_id"] == "req-confirm"
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["request_id"] == "req-confirm"


def test_serve_failing_unexpectedly_logs_one_json_line(monkeypatch, capsys):
    async def failing(settings: ServerSettings) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(stockade.api.server, "serve", failing)
    monkeypatch.setenv("STOCKADE_ADMIN_TOKEN", "t")
    assert main(["serve"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    fields = json.loads(line)
    assert fields["event"] == "failed" and fields["error"] == "RuntimeError"
    assert "RuntimeError: a bug" in fields["exception"]
