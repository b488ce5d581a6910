"""Broker sinks in the store (design.md §14): the ``sinks`` table, kept as
:mod:`stockade.persistence.subscriptions` keeps every kind of subscription (each store's
``sink_table()`` is its generic table over :data:`SINK_COLUMNS`).

A row is a sink (the broker ``url``, the event ``types`` it wants) and its progress (the
publishing cursor, failing, the last error). The URL is stored as given, password included:
publishing needs it. Who can read the database can read it; the API never shows it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from stockade.persistence.subscriptions import (
    Columns,
    SubscriptionTable,
    decode_types,
    encode_types,
)

__all__ = ["SINK_COLUMNS", "SinkRecord", "SinkStore", "SinkTable"]


class SinkRecord(msgspec.Struct, frozen=True):
    """A row of ``sinks``: ``types`` None means every event type; times are UNIX seconds;
    ``delivered_seq`` is the publishing cursor (every wanted event up to it was acknowledged
    by the broker)."""

    id: str
    url: str
    types: tuple[str, ...] | None
    delivered_seq: int
    created_at: float
    updated_at: float
    failing: bool = False
    last_error: str | None = None
    last_error_at: float | None = None


def _row(record: SinkRecord) -> tuple[Any, ...]:
    return (record.id, record.url, encode_types(record.types), record.delivered_seq,
            record.created_at, record.updated_at, record.failing, record.last_error,
            record.last_error_at)  # fmt: skip


def _record(row: Any) -> SinkRecord:
    sink_id, url, types, seq, created, updated, failing, error, error_at = row
    return SinkRecord(sink_id, url, decode_types(types), seq, created, updated, bool(failing),
                      error, error_at)  # fmt: skip


#: The ``sinks`` table's columns and how a record maps to them.
SINK_COLUMNS = Columns(
    "sinks",
    ("id", "url", "types", "delivered_seq", "created_at", "updated_at", "failing", "last_error",
     "last_error_at"),
    _row, _record,
)  # fmt: skip

#: Where a store keeps its sinks.
SinkTable = SubscriptionTable[SinkRecord]


@runtime_checkable
class SinkStore(Protocol):
    """A store that keeps sinks: the memory, SQLite and PostgreSQL stores."""

    def sink_table(self) -> SinkTable:
        """The store's sinks, through the store's own connections (open it first)."""
        ...
