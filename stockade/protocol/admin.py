"""Calls a front makes that are not Engine methods: the store's side of the HTTP API, served
by the engine process (:mod:`stockade.engine_process.admin`) for fronts that have no store.

* keys (design.md §10): :class:`KeysCall` answers the key table only when it changed since the
  version the front holds (a cheap poll every ``key_refresh_s``, so a key revoked through one
  front is refused by every front within a second); :class:`AddKeyCall`, :class:`RevokeKeyCall`
  write it.
* :class:`CheckBooksCall`: the books check (``GET /v1/admin/check``, design.md §11).
* :class:`EngineMetricsCall`: the engine process's own Prometheus series, as exposition text,
  for a front's ``/metrics``.
* webhooks (design.md §9): :class:`PutWebhookCall`, :class:`GetWebhookCall`,
  :class:`ListWebhooksCall`, :class:`DeleteWebhookCall`: the methods of the engine process's
  :class:`~stockade.outbound.service.Outbound`, which keeps and delivers them; broker sinks
  (design.md §14) alike: :class:`PutSinkCall`, :class:`GetSinkCall`, :class:`ListSinksCall`,
  :class:`DeleteSinkCall`.

Each is a Struct of :class:`~stockade.protocol.calls.CallBase` with its result type, and a row of
:data:`ADMIN_CALLS` (mode ``handler``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from stockade.outbound.views import (
    SinkPage,
    SinkSaved,
    SinkView,
    WebhookPage,
    WebhookSaved,
    WebhookView,
)
from stockade.persistence.books import BooksReport
from stockade.persistence.keys import KeyRecord
from stockade.protocol.calls import CallBase, CallSpec, spec_of

__all__ = [
    "ADMIN_CALLS",
    "AddKeyCall",
    "CheckBooksCall",
    "DeleteSinkCall",
    "DeleteWebhookCall",
    "EngineMetricsCall",
    "GetSinkCall",
    "GetWebhookCall",
    "KeyTableState",
    "KeysCall",
    "ListSinksCall",
    "ListWebhooksCall",
    "PutSinkCall",
    "PutWebhookCall",
    "RevokeKeyCall",
]


class KeyTableState(msgspec.Struct, frozen=True, array_like=True):
    """The key table at ``version`` (which grows whenever the table is seen to change):
    ``keys`` every key, revoked ones included, oldest first; None when the caller already
    holds this version."""

    version: int
    keys: list[KeyRecord] | None


class KeysCall(CallBase[KeyTableState], tag="admin.keys"):
    """The key table, unless it is still at ``version`` (0: the caller holds none)."""

    version: int = 0


class AddKeyCall(CallBase[None], tag="admin.add_key"):
    record: KeyRecord


class RevokeKeyCall(CallBase[KeyRecord | None], tag="admin.revoke_key"):
    """Revoke the key at ``at`` (idempotent): its row as it is now, or None for an unknown id."""

    key_id: str
    at: float


class CheckBooksCall(CallBase[BooksReport], tag="admin.check_books"):
    keep: int = 100


class EngineMetricsCall(CallBase[bytes], tag="admin.metrics"):
    """The engine process's series in Prometheus' text exposition format."""


class PutWebhookCall(CallBase[WebhookSaved], tag="admin.put_webhook"):
    webhook_id: str
    url: str
    types: list[str] | None
    secret: str
    batch: int = 1


class GetWebhookCall(CallBase[WebhookView | None], tag="admin.get_webhook"):
    webhook_id: str


class ListWebhooksCall(CallBase[WebhookPage], tag="admin.list_webhooks"):
    pass


class DeleteWebhookCall(CallBase[WebhookView | None], tag="admin.delete_webhook"):
    webhook_id: str


class PutSinkCall(CallBase[SinkSaved], tag="admin.put_sink"):
    sink_id: str
    url: str
    types: list[str] | None


class GetSinkCall(CallBase[SinkView | None], tag="admin.get_sink"):
    sink_id: str


class ListSinksCall(CallBase[SinkPage], tag="admin.list_sinks"):
    pass


class DeleteSinkCall(CallBase[SinkView | None], tag="admin.delete_sink"):
    sink_id: str


#: Every front-to-engine call that is not an Engine method.
ADMIN_CALLS: dict[type[CallBase[Any]], CallSpec] = {
    spec.struct: spec
    for spec in (
        spec_of(KeysCall, "handler"),
        spec_of(AddKeyCall, "handler"),
        spec_of(RevokeKeyCall, "handler"),
        spec_of(CheckBooksCall, "handler"),
        spec_of(EngineMetricsCall, "handler"),
        spec_of(PutWebhookCall, "handler"),
        spec_of(GetWebhookCall, "handler"),
        spec_of(ListWebhooksCall, "handler"),
        spec_of(DeleteWebhookCall, "handler"),
        spec_of(PutSinkCall, "handler"),
        spec_of(GetSinkCall, "handler"),
        spec_of(ListSinksCall, "handler"),
        spec_of(DeleteSinkCall, "handler"),
    )
}
