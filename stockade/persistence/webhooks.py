"""Webhook subscriptions in the store (design.md §9, §14): the ``webhooks`` table, kept as
:mod:`stockade.persistence.subscriptions` keeps every kind of subscription.

A row is a subscription (``url``, the event ``types`` it wants, the signing ``secret``, how
many events one POST carries: ``batch``) and its progress (the delivery cursor, failing, the
last error). The secret is stored as given, unlike an API key's: signing a delivery needs it.
Who can read the database can read the secrets; the API never shows them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgspec

from stockade.persistence.subscriptions import (
    Columns,
    MemoryTable,
    PostgresTable,
    SQLiteTable,
    SubscriptionTable,
    decode_types,
    encode_types,
)

__all__ = [
    "WEBHOOK_COLUMNS",
    "MemoryWebhooks",
    "PostgresWebhooks",
    "SQLiteWebhooks",
    "WebhookRecord",
    "WebhookStore",
    "WebhookTable",
]

T = TypeVar("T")


class WebhookRecord(msgspec.Struct, frozen=True):
    """A row of ``webhooks``: ``types`` None means every event type; times are UNIX seconds;
    ``delivered_seq`` is the delivery cursor (every wanted event up to it was delivered);
    ``batch``: the most events one POST carries."""

    id: str
    url: str
    types: tuple[str, ...] | None
    secret: str
    delivered_seq: int
    created_at: float
    updated_at: float
    failing: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    batch: int = 1


def _row(record: WebhookRecord) -> tuple[Any, ...]:
    return (record.id, record.url, encode_types(record.types), record.secret,
            record.delivered_seq, record.created_at, record.updated_at, record.failing,
            record.last_error, record.last_error_at, record.batch)  # fmt: skip


def _record(row: Any) -> WebhookRecord:
    webhook_id, url, types, secret, seq, created, updated, failing, error, error_at, batch = row
    return WebhookRecord(webhook_id, url, decode_types(types), secret, seq, created, updated,
                         bool(failing), error, error_at, batch)  # fmt: skip


#: The ``webhooks`` table's columns and how a record maps to them.
WEBHOOK_COLUMNS = Columns(
    "webhooks",
    ("id", "url", "types", "secret", "delivered_seq", "created_at", "updated_at", "failing",
     "last_error", "last_error_at", "batch"),
    _row, _record,
)  # fmt: skip

#: Where a store keeps its webhook subscriptions.
WebhookTable = SubscriptionTable[WebhookRecord]


@runtime_checkable
class WebhookStore(Protocol):
    """A store that keeps webhook subscriptions: the memory, SQLite and PostgreSQL stores."""

    def webhook_table(self) -> WebhookTable:
        """The store's subscriptions, through the store's own connections (open it first)."""
        ...


class MemoryWebhooks(MemoryTable[WebhookRecord]):
    """Webhook subscriptions in this process (the memory store's)."""


class SQLiteWebhooks(SQLiteTable[WebhookRecord]):
    """The ``webhooks`` table of a SQLite store, through its ``run`` (see SQLiteTable)."""

    def __init__(self, run: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]) -> None:
        super().__init__(run, WEBHOOK_COLUMNS)


class PostgresWebhooks(PostgresTable[WebhookRecord]):
    """The ``webhooks`` table of a PostgreSQL store, through its ``run`` (see PostgresTable)."""

    def __init__(self, run: Callable[[Callable[[Any], Coroutine[Any, Any, T]]], Awaitable[T]]):
        super().__init__(run, WEBHOOK_COLUMNS)
