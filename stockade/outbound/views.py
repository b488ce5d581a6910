"""What :class:`~stockade.outbound.service.Outbound` answers: plain msgspec Structs, the same
whether the HTTP routes call it in the engine's process or a front calls it over the engine
protocol (they encode as JSON and as msgpack alike)."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = [
    "SinkPage",
    "SinkSaved",
    "SinkView",
    "WebhookPage",
    "WebhookSaved",
    "WebhookView",
]


class _Following(msgspec.Struct):
    """What every kind of subscription shows: where its deliveries stand."""

    id: str
    url: str
    types: list[str] | None
    cursor: int
    head: int
    backlog: int
    failing: bool
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookView(_Following):
    """A subscription as the API shows it (never its secret). ``cursor``: every wanted event
    up to this seq was delivered; ``head``: the newest event; ``backlog``: the events between;
    ``batch``: the most events one POST carries."""

    batch: int = 1


class WebhookPage(msgspec.Struct):
    """Every subscription, in id order."""

    items: list[WebhookView]


class WebhookSaved(msgspec.Struct):
    """A subscription just written, and whether it is new (else it replaced one)."""

    webhook: WebhookView
    created: bool


class SinkView(_Following):
    """A sink as the API shows it: ``url`` with its password masked (``***``); ``cursor``:
    every wanted event up to this seq was acknowledged by the broker; ``head``: the newest
    event; ``backlog``: the events between; ``delivered`` and ``failures``: events published
    and batches failed since the server started."""

    delivered: int
    failures: int


class SinkPage(msgspec.Struct):
    """Every sink, in id order."""

    items: list[SinkView]


class SinkSaved(msgspec.Struct):
    """A sink just written, and whether it is new (else it replaced one)."""

    sink: SinkView
    created: bool
