"""What every answered request leaves behind: its id, its metrics, its log line and, when
tracing is on, its span's route and status, in one place.

Quart's routes (through ``after_request``), the order fast path and the request guard's own
answers all go through :class:`Accounting`, so they count, time, log and trace alike. Routes
call the engine through :func:`traced`, which adds the engine span when tracing is on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from stockade.api.logs import log_event, set_request_id
from stockade.api.metrics import Metrics

if TYPE_CHECKING:  # only imported when tracing is on: see stockade/api/tracing.py
    from stockade.api.tracing import Tracing

__all__ = ["Accounting", "request_id", "traced"]

T = TypeVar("T")

#: the longest caller-supplied X-Request-Id kept (the rest is cut off)
MAX_REQUEST_ID = 64


def request_id(supplied: str | None) -> str:
    """The caller's ``X-Request-Id`` (its first 64 characters) or, without one, a new random
    id; from now on, the request id of the current task's log records."""
    rid = supplied[:MAX_REQUEST_ID] if supplied else secrets.token_hex(8)
    set_request_id(rid)
    return rid


async def traced(
    tracing: Tracing | None, name: str, call: Awaitable[T], sku_count: int | None = None
) -> T:
    """``await call``, an engine call: with ``tracing`` on, inside a span ``name``
    (``stockade.confirm``...) under the request's (see :meth:`Tracing.engine_call`). Blocks
    and can be cancelled as ``call`` does."""
    if tracing is None:
        return await call
    return await tracing.engine_call(name, call, sku_count)


class Accounting:
    """Counts and logs answered requests for one app, and names their spans when ``tracing``
    is on. Never blocks."""

    def __init__(
        self, metrics: Metrics, log_requests: bool, tracing: Tracing | None = None
    ) -> None:
        self.metrics = metrics
        self.log_requests = log_requests
        self.tracing = tracing

    def answered(
        self, method: str, route: str, status: int, started: float, request_id: str
    ) -> None:
        """Account for one answer: ``started`` is the request's ``time.perf_counter()``, ``route``
        the route's pattern (never the raw path, which would make a label per sku)."""
        seconds = time.perf_counter() - started
        self.metrics.record(method, route, status, seconds)
        trace_id = None
        if self.tracing is not None:
            trace_id = self.tracing.answered(method, route, status, request_id)
        if self.log_requests:
            traces = {} if trace_id is None else {"trace_id": trace_id}
            log_event("request", id=request_id, method=method, route=route, status=status,
                      ms=round(seconds * 1000, 2), **traces)  # fmt: skip
