"""Webhook subscriptions in the store (design.md §9): the ``webhooks`` table, one class per
dialect.

A row is a subscription (``url``, the event ``types`` it wants, the signing ``secret``) and its
progress: ``delivered_seq``, the change feed's seq up to which every wanted event was delivered
(the delivery cursor), whether it is ``failing`` and its last error. Only the server that owns
the store writes the table, through the store object it holds, never on the trio thread:

* SQLite: the owner's writer connection, in its worker thread between two commits (each write
  is one short transaction);
* PostgreSQL: the store's pool of reader connections (the writer's session stays the journal's);
* memory: a dict the memory store keeps (gone with the process).

The secret is stored as given, unlike an API key's: signing a delivery needs it. Who can read
the database can read the secrets; the API never shows them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar, runtime_checkable

import msgspec
import trio

from stockade.persistence.sql import numbered

__all__ = [
    "MemoryWebhooks",
    "PostgresWebhooks",
    "SQLiteWebhooks",
    "WebhookProgress",
    "WebhookRecord",
    "WebhookStore",
    "WebhookTable",
]

T = TypeVar("T")

_COLUMNS = (
    "id, url, types, secret, delivered_seq, created_at, updated_at, failing, last_error, "
    "last_error_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM webhooks ORDER BY id"
#: A subscription written whole (its first ``created_at`` is kept on a replace).
_UPSERT = (
    f"INSERT INTO webhooks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET url = excluded.url, types = excluded.types, "
    "secret = excluded.secret, delivered_seq = excluded.delivered_seq, "
    "updated_at = excluded.updated_at, failing = excluded.failing, "
    "last_error = excluded.last_error, last_error_at = excluded.last_error_at"
)
_DELETE = "DELETE FROM webhooks WHERE id = ?"
#: Progress touches rows that still exist only: a subscription deleted meanwhile stays deleted.
_PROGRESS = (
    "UPDATE webhooks SET delivered_seq = ?, failing = ?, last_error = ?, last_error_at = ? "
    "WHERE id = ?"
)
_list_encoder = msgspec.json.Encoder()
_list_decoder = msgspec.json.Decoder(tuple[str, ...])


class WebhookRecord(msgspec.Struct, frozen=True):
    """A row of ``webhooks``: ``types`` None means every event type; times are UNIX seconds;
    ``delivered_seq`` is the delivery cursor (every wanted event up to it was delivered)."""

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


class WebhookProgress(msgspec.Struct, frozen=True):
    """How far a subscription's deliveries got: what :meth:`WebhookTable.save_progress`
    writes."""

    id: str
    delivered_seq: int
    failing: bool
    last_error: str | None
    last_error_at: float | None


class WebhookTable(Protocol):
    """Where a store keeps its webhook subscriptions. Every call may block on the database (off
    the trio thread), may be cancelled, and may raise StoreUnavailable."""

    async def webhooks(self) -> list[WebhookRecord]:
        """Every subscription, in id order."""
        ...

    async def put(self, record: WebhookRecord) -> None:
        """Insert ``record``, or replace the row of its id (keeping its ``created_at``)."""
        ...

    async def delete(self, webhook_id: str) -> bool:
        """Delete the subscription; False if there was none."""
        ...

    async def save_progress(self, progress: list[WebhookProgress]) -> None:
        """Write each subscription's progress in one transaction; ids that no longer exist are
        skipped."""
        ...


@runtime_checkable
class WebhookStore(Protocol):
    """A store that keeps webhook subscriptions: the memory, SQLite and PostgreSQL stores."""

    def webhook_table(self) -> WebhookTable:
        """The store's subscriptions, through the store's own connections (open it first)."""
        ...


def _row(record: WebhookRecord) -> tuple[Any, ...]:
    types = None if record.types is None else _list_encoder.encode(record.types).decode()
    return (record.id, record.url, types, record.secret, record.delivered_seq,
            record.created_at, record.updated_at, record.failing, record.last_error,
            record.last_error_at)  # fmt: skip


def _record(row: Any) -> WebhookRecord:
    webhook_id, url, types, secret, seq, created, updated, failing, error, error_at = row
    kinds = None if types is None else _list_decoder.decode(types)
    return WebhookRecord(webhook_id, url, kinds, secret, seq, created, updated, bool(failing),
                         error, error_at)  # fmt: skip


def _progress_rows(progress: list[WebhookProgress]) -> list[tuple[Any, ...]]:
    return [(p.delivered_seq, p.failing, p.last_error, p.last_error_at, p.id) for p in progress]


class MemoryWebhooks:
    """Subscriptions in this process (the memory store's)."""

    def __init__(self) -> None:
        self.records: dict[str, WebhookRecord] = {}

    async def webhooks(self) -> list[WebhookRecord]:
        await trio.lowlevel.checkpoint()
        return [self.records[key] for key in sorted(self.records)]

    async def put(self, record: WebhookRecord) -> None:
        await trio.lowlevel.checkpoint()
        before = self.records.get(record.id)
        if before is not None:
            record = msgspec.structs.replace(record, created_at=before.created_at)
        self.records[record.id] = record

    async def delete(self, webhook_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self.records.pop(webhook_id, None) is not None

    async def save_progress(self, progress: list[WebhookProgress]) -> None:
        await trio.lowlevel.checkpoint()
        for p in progress:
            record = self.records.get(p.id)
            if record is not None:
                self.records[p.id] = msgspec.structs.replace(
                    record, delivered_seq=p.delivered_seq, failing=p.failing,
                    last_error=p.last_error, last_error_at=p.last_error_at,
                )  # fmt: skip


class SQLiteWebhooks:
    """The ``webhooks`` table of a SQLite store, through ``run``: the store's, which calls a
    function with its writer connection in its worker thread (translating sqlite3's errors).
    A call cannot be cancelled once that thread runs it; it waits behind a commit in progress."""

    def __init__(self, run: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]) -> None:
        self._run: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]] = run

    async def webhooks(self) -> list[WebhookRecord]:
        def read(conn: sqlite3.Connection) -> list[WebhookRecord]:
            return [_record(row) for row in conn.execute(_SELECT)]

        records: list[WebhookRecord] = await self._run(read)
        return records

    async def put(self, record: WebhookRecord) -> None:
        await self._run(lambda conn: _write(conn, _UPSERT, [_row(record)]))

    async def delete(self, webhook_id: str) -> bool:
        deleted: int = await self._run(lambda conn: _write(conn, _DELETE, [(webhook_id,)]))
        return deleted > 0

    async def save_progress(self, progress: list[WebhookProgress]) -> None:
        if progress:
            await self._run(lambda conn: _write(conn, _PROGRESS, _progress_rows(progress)))


def _write(conn: sqlite3.Connection, statement: str, rows: list[tuple[Any, ...]]) -> int:
    """Run ``statement`` for each row in one transaction; return the rows it changed."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        return conn.executemany(statement, rows).rowcount


class PostgresWebhooks:
    """The ``webhooks`` table of a PostgreSQL store, through ``run``: the store's, which calls
    a coroutine function with its readers' pool on the store's asyncio loop (translating a lost
    connection into StoreUnavailable). Cancelling a call drops its statement's outcome."""

    def __init__(self, run: Callable[[Callable[[Any], Coroutine[Any, Any, T]]], Awaitable[T]]):
        self._run: Callable[[Callable[[Any], Coroutine[Any, Any, Any]]], Awaitable[Any]] = run

    async def webhooks(self) -> list[WebhookRecord]:
        async def read(pool: Any) -> list[WebhookRecord]:
            return [_record(tuple(row)) for row in await pool.fetch(_SELECT)]

        records: list[WebhookRecord] = await self._run(read)
        return records

    async def put(self, record: WebhookRecord) -> None:
        async def write(pool: Any) -> None:
            await pool.execute(numbered(_UPSERT), *_row(record))

        await self._run(write)

    async def delete(self, webhook_id: str) -> bool:
        async def write(pool: Any) -> bool:
            status: str = await pool.execute(numbered(_DELETE), webhook_id)
            return status != "DELETE 0"

        deleted: bool = await self._run(write)
        return deleted

    async def save_progress(self, progress: list[WebhookProgress]) -> None:
        async def write(pool: Any) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(numbered(_PROGRESS), _progress_rows(progress))

        if progress:
            await self._run(write)
