"""OpenTelemetry traces of the HTTP API, for an operator who asks for them.

Off unless configured (see :func:`stockade.api.server.tracing_requested`): then this module is
never imported, no span is made, and the order path pays one ``is None`` check. On, each
request gets:

* a **server span** (``POST /v1/orders``...), a child of the caller's W3C ``traceparent`` when
  it sends one (the propagators are OpenTelemetry's, ``OTEL_PROPAGATORS``), with
  ``http.request.method``, ``http.route``, ``http.response.status_code`` and
  ``stockade.request_id``; made by :class:`TracingMiddleware`, in front of everything, and
  named and completed when the answer is accounted for (:meth:`Tracing.answered`);
* a child span per **engine call** (``stockade.place_order``, ``stockade.confirm``...) with
  ``stockade.outcome`` (the order's status, ``ok``, or the problem type of a refusal:
  ``out-of-stock``...), ``stockade.order_id`` and ``stockade.sku_count``
  (:meth:`Tracing.engine_call`, through :func:`stockade.api.accounting.traced`);
* under it, a **commit span** (``stockade.journal.commit``) for the journal batch that made
  the change durable, made after the fact from the times the journal hands the waiting task
  (:data:`stockade.persistence.journal.last_commit`): the engine knows nothing of tracing.

Spans are exported from a background thread (``BatchSpanProcessor``), never on the trio
thread; the exporters are OpenTelemetry's, chosen and configured by its ``OTEL_*`` variables
(:func:`open_tracing`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable
from importlib.metadata import entry_points
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id

import stockade
from stockade.api.asgi import ASGIApp, Receive, Scope, Send
from stockade.api.problems import problem_kind
from stockade.engine.models import Order
from stockade.errors import InvalidRequest, StockadeError
from stockade.persistence.journal import CommitTimes, last_commit

__all__ = ["Tracing", "TracingMiddleware", "open_tracing"]

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]


class _HeaderGetter(Getter[Headers]):
    """Reads propagation headers straight from an ASGI scope's header list."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        found = [value.decode("latin-1") for header, value in carrier if header == name]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_headers = _HeaderGetter()


class Tracing:
    """The spans of one app, made by a tracer of ``provider`` (an SDK ``TracerProvider`` with
    its span processors: :func:`open_tracing` makes one from the environment, a test one with
    an in-memory exporter)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("stockade", stockade.__version__)

    def middleware(self, app: ASGIApp) -> TracingMiddleware:
        """``app`` with a server span around each HTTP request."""
        return TracingMiddleware(app, self)

    def answered(self, method: str, route: str, status: int, request_id: str) -> str | None:
        """Name and complete the current request's server span: its route (a pattern;
        ``unmatched`` leaves the span named by the method), status and request id. Returns the
        trace id, in hex, for the request's log line (None outside a span). Never blocks."""
        span = trace.get_current_span()
        context = span.get_span_context()
        if not context.is_valid:
            return None
        if span.is_recording():
            if route != "unmatched":
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            span.set_attribute("stockade.request_id", request_id)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        return format_trace_id(context.trace_id)

    async def engine_call(self, name: str, call: Awaitable[T], sku_count: int | None = None) -> T:
        """``await call`` inside a span ``name``, a child of the current (request) span; when
        the call waited for a journal commit, a ``stockade.journal.commit`` span under it
        covers that commit. ``sku_count``: the lines of an order being placed (otherwise,
        those of the Order the call returns). Blocks and can be cancelled as ``call`` does."""
        last_commit.set(None)
        with self.tracer.start_as_current_span(
            name, record_exception=False, set_status_on_exception=False
        ) as span:
            outcome = "interrupted"  # a cancellation, unless we learn better
            try:
                result = await call
            except StockadeError as refused:
                status, outcome, _ = problem_kind(refused)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, outcome))
                raise
            except Exception as error:
                outcome = "error"
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise
            else:
                outcome = "ok"
                if isinstance(result, Order):
                    outcome = result.status
                    span.set_attribute("stockade.order_id", result.id)
                    if sku_count is None:
                        sku_count = len(result.lines)
                return result
            finally:
                span.set_attribute("stockade.outcome", outcome)
                if sku_count is not None:
                    span.set_attribute("stockade.sku_count", sku_count)
                if (times := last_commit.get()) is not None:
                    self._commit_span(times)

    def _commit_span(self, times: CommitTimes) -> None:
        span = self.tracer.start_span(
            "stockade.journal.commit",
            start_time=times.start_ns,
            attributes={"stockade.batch_events": times.events},
        )
        span.end(end_time=times.end_ns)

    @staticmethod
    def current_ids() -> tuple[str, str] | None:
        """``(trace_id, span_id)`` of the current span, in hex, or None: for log records."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format_trace_id(context.trace_id), format_span_id(context.span_id)

    def shutdown(self) -> None:
        """Export what is left and stop the exporters. Blocks (up to the exporters' timeouts):
        call it from a thread."""
        self.provider.shutdown()


class TracingMiddleware:
    """Wraps the whole ASGI app: each HTTP request runs inside a server span, whose parent is
    what the request's propagation headers (``traceparent``) carry. An exception that escapes
    the app is recorded on the span (hypercorn answers 500 and logs it)."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        parent = get_global_textmap().extract(scope["headers"], getter=_headers)
        method = scope["method"]
        attributes = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        with self.tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                await self.app(scope, receive, send)
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise


def open_tracing() -> Tracing:
    """Tracing as the ``OTEL_*`` environment variables configure it: the exporters named by
    ``OTEL_TRACES_EXPORTER`` (default ``otlp``: OTLP over HTTP/protobuf to
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, with their
    ``_HEADERS``, ``_TIMEOUT``...; ``console``: one JSON line per span on stderr; any other
    name, an installed exporter's entry point), each behind a batching processor, the sampler
    of ``OTEL_TRACES_SAMPLER`` (default: follow the caller's decision, else sample all), and
    the resource of ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (service name
    ``stockade`` unless they name one). Raises InvalidRequest for an exporter or OTLP protocol
    that is not available."""
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters = [_exporter(name) for name in names if name and name != "none"]
    resource = Resource.create({SERVICE_VERSION: stockade.__version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "stockade"}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr, formatter=_one_line)
    if name == "otlp":
        protocol = (
            os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
        if protocol != "grpc":
            raise InvalidRequest(
                f"OTLP protocol {protocol!r} is not supported: use http/protobuf or grpc"
            )
        name = "otlp_proto_grpc"
    for entry in entry_points(group="opentelemetry_traces_exporter", name=name):
        exporter = entry.load()()
        if not isinstance(exporter, SpanExporter):
            raise InvalidRequest(f"the entry point {name!r} is not a trace exporter")
        return exporter
    raise InvalidRequest(
        f"no OpenTelemetry trace exporter {name!r} is installed (OTEL_TRACES_EXPORTER): "
        "stockade ships otlp (over HTTP/protobuf), console and none"
    )


def _one_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"
