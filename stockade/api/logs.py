"""Structured logs: one JSON object per line on stderr.

The server's own events go through :func:`log_event`; everything logged through the standard
library (``log.exception(...)`` in the routes, hypercorn's and quart's loggers, warnings, the
OpenTelemetry exporter's complaints) goes through the root logger's handler that
:func:`install_json_logging` sets up, as one JSON object per record: ``ts``, ``event``
(``"log"``), ``level``, ``logger``, ``message``, the request's ``request_id`` (the record's own,
or the one :func:`set_request_id` noted for the task that logs), ``trace_id`` and ``span_id``
when tracing is on and a span is current, and ``exception``: the traceback, as a string.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import msgspec

__all__ = [
    "JsonFormatter",
    "JsonHandler",
    "TraceIds",
    "install_json_logging",
    "log_event",
    "set_process_role",
    "set_request_id",
]

_encoder = msgspec.json.Encoder()
_request_id: ContextVar[str | None] = ContextVar("stockade_request_id", default=None)
#: Fields every line of this process carries (its role, when it has one).
_process: dict[str, str] = {}

#: What a tracer says about the current span: ``(trace_id, span_id)`` in hex, or None.
TraceIds = Callable[[], tuple[str, str] | None]


def log_event(event: str, **fields: Any) -> None:
    line = _encoder.encode({"ts": round(time.time(), 3), "event": event, **_process, **fields})
    sys.stderr.write(line.decode() + "\n")
    sys.stderr.flush()


def set_process_role(role: str) -> None:
    """Name this process's role (``engine``, ``front``, ``supervisor``): every later line,
    events and records alike, carries ``"role": role``."""
    _process["role"] = role


def set_request_id(request_id: str) -> None:
    """Note the id of the request the current task answers: what its log records carry when
    they name none. Each request runs in a task of its own, so the note ends with it."""
    _request_id.set(request_id)


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring). ``trace_ids`` gives
    the current span's ids; None when tracing is off."""

    def __init__(self, trace_ids: TraceIds | None = None) -> None:
        super().__init__()
        self.trace_ids = trace_ids

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": round(record.created, 3),
            "event": "log",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_process,
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            fields["request_id"] = str(request_id)
        if self.trace_ids is not None and (ids := self.trace_ids()) is not None:
            fields["trace_id"], fields["span_id"] = ids
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(fields).decode()


class JsonHandler(logging.Handler):
    """Writes each record, formatted, as one line to whatever ``sys.stderr`` is when it is
    logged. Never blocks beyond the write."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            stream = sys.stderr
            stream.write(line)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def install_json_logging(trace_ids: TraceIds | None = None, level: int = logging.INFO) -> None:
    """Send every standard-library log record of ``level`` or above, and every warning, to
    stderr as JSON (replacing a handler an earlier call installed). For a process that owns
    its logging: the server."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, JsonHandler)]:
        root.removeHandler(handler)
    handler = JsonHandler()
    handler.setFormatter(JsonFormatter(trace_ids))
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
