"""What every answered request leaves behind: its id, its metrics and its log line, in one place.

Quart's routes (through ``after_request``), the order fast path and the request guard's own
answers all go through :class:`Accounting`, so they count, time and log alike.
"""

from __future__ import annotations

import secrets
import time

from stockade.api.logs import log_event
from stockade.api.metrics import Metrics

__all__ = ["Accounting", "request_id"]

#: the longest caller-supplied X-Request-Id kept (the rest is cut off)
MAX_REQUEST_ID = 64


def request_id(supplied: str | None) -> str:
    """The caller's ``X-Request-Id`` (its first 64 characters) or, without one, a new random id."""
    return supplied[:MAX_REQUEST_ID] if supplied else secrets.token_hex(8)


class Accounting:
    """Counts and logs answered requests for one app. Never blocks."""

    def __init__(self, metrics: Metrics, log_requests: bool) -> None:
        self.metrics = metrics
        self.log_requests = log_requests

    def answered(
        self, method: str, route: str, status: int, started: float, request_id: str
    ) -> None:
        """Account for one answer: ``started`` is the request's ``time.perf_counter()``, ``route``
        the route's pattern (never the raw path, which would make a label per sku)."""
        seconds = time.perf_counter() - started
        self.metrics.record(method, route, status, seconds)
        if self.log_requests:
            log_event("request", id=request_id, method=method, route=route, status=status,
                      ms=round(seconds * 1000, 2))  # fmt: skip
