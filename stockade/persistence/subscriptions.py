"""Tables of subscriptions to the change feed (webhooks, sinks): one row per subscription,
with how far its deliveries got, in every store, written once for all of them.

A row is a subscription's settings (a record Struct whose first field is its ``id`` and which
has ``created_at``) and its progress (:class:`Progress`): ``delivered_seq``, the change feed's
seq up to which every wanted event was delivered (the delivery cursor), whether it is
``failing``, and its last error. Only the server that owns the store writes the table, through
the store object it holds, never on the trio thread:

* SQLite: the owner's writer connection, in its worker thread between two commits (each write
  is one short transaction);
* PostgreSQL: the store's pool of reader connections (the writer's session stays the journal's);
* memory: a dict the memory store keeps (gone with the process).

A :class:`Columns` names a table and how a record maps to its row; :class:`MemoryTable`,
:class:`SQLiteTable` and :class:`PostgresTable` keep records through it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import trio

from stockade.persistence.sql import numbered

__all__ = [
    "Columns",
    "MemoryTable",
    "PostgresTable",
    "Progress",
    "SQLiteTable",
    "SubscriptionTable",
    "decode_types",
    "encode_types",
]

T = TypeVar("T")
R = TypeVar("R", bound=msgspec.Struct)
_list_encoder = msgspec.json.Encoder()
_list_decoder = msgspec.json.Decoder(tuple[str, ...])


class Progress(msgspec.Struct, frozen=True):
    """How far a subscription's deliveries got: what :meth:`SubscriptionTable.save_progress`
    writes."""

    id: str
    delivered_seq: int
    failing: bool
    last_error: str | None
    last_error_at: float | None


def encode_types(types: tuple[str, ...] | None) -> str | None:
    """A list of event types as the ``types`` column keeps it (JSON; NULL for every type)."""
    return None if types is None else _list_encoder.encode(types).decode()


def decode_types(column: str | None) -> tuple[str, ...] | None:
    return None if column is None else _list_decoder.decode(column)


class Columns(Generic[R]):
    """The table ``name`` and its ``columns`` (``id`` first, ``created_at`` among them, and
    the four of :class:`Progress`); ``to_row`` and ``from_row`` map a record to the values of
    ``columns`` and back. Builds the statements every table runs."""

    def __init__(
        self, name: str, columns: tuple[str, ...], to_row: Callable[[R], tuple[Any, ...]],
        from_row: Callable[[Any], R],
    ) -> None:  # fmt: skip
        self.to_row = to_row
        self.from_row = from_row
        listed = ", ".join(columns)
        self.select = f"SELECT {listed} FROM {name} ORDER BY id"
        kept = ("id", "created_at")  # a replace keeps the first created_at
        updated = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in kept)
        marks = ", ".join("?" * len(columns))
        self.upsert = (
            f"INSERT INTO {name} ({listed}) VALUES ({marks}) "
            f"ON CONFLICT (id) DO UPDATE SET {updated}"
        )
        self.delete = f"DELETE FROM {name} WHERE id = ?"
        #: Progress touches rows that still exist only: one deleted meanwhile stays deleted.
        self.progress = (
            f"UPDATE {name} SET delivered_seq = ?, failing = ?, last_error = ?, "
            "last_error_at = ? WHERE id = ?"
        )


def _progress_rows(progress: list[Progress]) -> list[tuple[Any, ...]]:
    return [(p.delivered_seq, p.failing, p.last_error, p.last_error_at, p.id) for p in progress]


class SubscriptionTable(Protocol[R]):
    """Where a store keeps one kind of subscription. Every call may block on the database (off
    the trio thread), may be cancelled, and may raise StoreUnavailable."""

    async def all(self) -> list[R]:
        """Every subscription, in id order."""
        ...

    async def put(self, record: R) -> None:
        """Insert ``record``, or replace the row of its id (keeping its ``created_at``)."""
        ...

    async def delete(self, subscription_id: str) -> bool:
        """Delete the subscription; False if there was none."""
        ...

    async def save_progress(self, progress: list[Progress]) -> None:
        """Write each subscription's progress in one transaction; ids that no longer exist are
        skipped."""
        ...


class MemoryTable(Generic[R]):
    """Subscriptions in this process (the memory store's): ``records`` by id."""

    def __init__(self) -> None:
        self.records: dict[str, R] = {}

    async def all(self) -> list[R]:
        await trio.lowlevel.checkpoint()
        return [self.records[key] for key in sorted(self.records)]

    async def put(self, record: R) -> None:
        await trio.lowlevel.checkpoint()
        record_id: str = getattr(record, "id")  # noqa: B009 (every record has one)
        before = self.records.get(record_id)
        if before is not None:
            record = msgspec.structs.replace(record, created_at=getattr(before, "created_at"))  # noqa: B009
        self.records[record_id] = record

    async def delete(self, subscription_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self.records.pop(subscription_id, None) is not None

    async def save_progress(self, progress: list[Progress]) -> None:
        await trio.lowlevel.checkpoint()
        for p in progress:
            record = self.records.get(p.id)
            if record is not None:
                self.records[p.id] = msgspec.structs.replace(
                    record, delivered_seq=p.delivered_seq, failing=p.failing,
                    last_error=p.last_error, last_error_at=p.last_error_at,
                )  # fmt: skip


class SQLiteTable(Generic[R]):
    """A table of a SQLite store, through ``run``: the store's, which calls a function with its
    writer connection in its worker thread (translating sqlite3's errors). A call cannot be
    cancelled once that thread runs it; it waits behind a commit in progress."""

    def __init__(
        self, run: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]], columns: Columns[R]
    ) -> None:
        self._run: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]] = run
        self._columns = columns

    async def all(self) -> list[R]:
        columns = self._columns

        def read(conn: sqlite3.Connection) -> list[R]:
            return [columns.from_row(row) for row in conn.execute(columns.select)]

        records: list[R] = await self._run(read)
        return records

    async def put(self, record: R) -> None:
        row = self._columns.to_row(record)
        await self._run(lambda conn: _write(conn, self._columns.upsert, [row]))

    async def delete(self, subscription_id: str) -> bool:
        statement = self._columns.delete
        deleted: int = await self._run(lambda conn: _write(conn, statement, [(subscription_id,)]))
        return deleted > 0

    async def save_progress(self, progress: list[Progress]) -> None:
        if progress:
            rows = _progress_rows(progress)
            await self._run(lambda conn: _write(conn, self._columns.progress, rows))


def _write(conn: sqlite3.Connection, statement: str, rows: list[tuple[Any, ...]]) -> int:
    """Run ``statement`` for each row in one transaction; return the rows it changed."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        return conn.executemany(statement, rows).rowcount


class PostgresTable(Generic[R]):
    """A table of a PostgreSQL store, through ``run``: the store's, which calls a coroutine
    function with its readers' pool on the store's asyncio loop (translating a lost connection
    into StoreUnavailable). Cancelling a call drops its statement's outcome."""

    def __init__(
        self, run: Callable[[Callable[[Any], Coroutine[Any, Any, T]]], Awaitable[T]],
        columns: Columns[R],
    ) -> None:  # fmt: skip
        self._run: Callable[[Callable[[Any], Coroutine[Any, Any, Any]]], Awaitable[Any]] = run
        self._columns = columns
        self._upsert = numbered(columns.upsert)
        self._delete = numbered(columns.delete)
        self._progress = numbered(columns.progress)

    async def all(self) -> list[R]:
        columns = self._columns

        async def read(pool: Any) -> list[R]:
            return [columns.from_row(tuple(row)) for row in await pool.fetch(columns.select)]

        records: list[R] = await self._run(read)
        return records

    async def put(self, record: R) -> None:
        row = self._columns.to_row(record)

        async def write(pool: Any) -> None:
            await pool.execute(self._upsert, *row)

        await self._run(write)

    async def delete(self, subscription_id: str) -> bool:
        async def write(pool: Any) -> bool:
            status: str = await pool.execute(self._delete, subscription_id)
            return status != "DELETE 0"

        deleted: bool = await self._run(write)
        return deleted

    async def save_progress(self, progress: list[Progress]) -> None:
        rows = _progress_rows(progress)

        async def write(pool: Any) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(self._progress, rows)

        if progress:
            await self._run(write)
