"""The W3C trace context across the hop, for when tracing is on (imported only then, so
OpenTelemetry stays unimported otherwise).

The client puts the current span's ``traceparent``/``tracestate`` on each request
(:func:`current_trace_context`); the engine runs the call inside a server span that is their
child (:class:`CallSpans`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind

__all__ = ["CallSpans", "current_trace_context"]


def current_trace_context() -> tuple[str | None, str | None]:
    """``(traceparent, tracestate)`` of the current context, as OpenTelemetry's propagators
    write them (None when there is no span)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


class CallSpans:
    """Opens a server span ``stockade.engine.<call>`` per call, the child of the context the
    request carried. ``tracer`` is an OpenTelemetry tracer (e.g. of the engine process's
    TracerProvider)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def __call__(
        self, name: str, traceparent: str | None, tracestate: str | None
    ) -> AbstractContextManager[object]:
        carrier = {}
        if traceparent:
            carrier["traceparent"] = traceparent
            if tracestate:
                carrier["tracestate"] = tracestate
        return self.tracer.start_as_current_span(
            f"stockade.engine.{name}", context=extract(carrier), kind=SpanKind.SERVER
        )
