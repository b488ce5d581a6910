"""The W3C trace context across the hop, for when tracing is on (imported only then, so
OpenTelemetry stays unimported otherwise).

The client puts the current span's ``traceparent``/``tracestate`` on each request
(:func:`current_trace_context`); the engine runs the call inside a server span that is their
child (:class:`CallSpans`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import SpanKind

from stockade.persistence.journal import last_commit

__all__ = ["CallSpans", "current_trace_context"]


def current_trace_context() -> tuple[str | None, str | None]:
    """``(traceparent, tracestate)`` of the current context, as OpenTelemetry's propagators
    write them (None when there is no span)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


class CallSpans:
    """Opens a server span ``stockade.engine.<call>`` per call, the child of the context the
    request carried; when the call waited for a journal commit (the journal records commit
    times when tracing is on), a ``stockade.journal.commit`` span under it covers that
    commit. ``tracer`` is an OpenTelemetry tracer (e.g. of the engine process's
    TracerProvider)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    @contextmanager
    def __call__(
        self, name: str, traceparent: str | None, tracestate: str | None
    ) -> Iterator[object]:
        carrier = {}
        if traceparent:
            carrier["traceparent"] = traceparent
            if tracestate:
                carrier["tracestate"] = tracestate
        last_commit.set(None)
        with self.tracer.start_as_current_span(
            f"stockade.engine.{name}", context=extract(carrier), kind=SpanKind.SERVER
        ) as span:
            try:
                yield span
            finally:
                if (times := last_commit.get()) is not None:
                    commit = self.tracer.start_span(
                        "stockade.journal.commit",
                        start_time=times.start_ns,
                        attributes={"stockade.batch_events": times.events},
                    )
                    commit.end(end_time=times.end_ns)
