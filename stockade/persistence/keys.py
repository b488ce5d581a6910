"""API keys in the store (design.md §10): the ``api_keys`` table, one class per dialect.

A key is ``sk_<id>_<secret>``: ``id`` is 16 hex digits, the row's primary key, so a presented
key is found without a scan; ``secret`` is 256 random bits (43 URL-safe base64 characters).
Only the secret's SHA-256 is stored (hex, column ``hash``): for a random 256-bit secret a plain
hash is all that is needed (nothing can be guessed or precomputed from it), and the key itself
is shown once, when it is made. A revoked key keeps its row, with ``revoked_at``.

A key table never takes the store's ownership lock, so keys can be read and written whether or
not a server owns the store. SQLite: a connection of its own to the file (WAL mode lets it read
beside the owner; a write waits for the owner's transaction through SQLite's busy timeout,
``BUSY_TIMEOUT_S``). PostgreSQL: a session of its own, which never asks for the owner's
advisory lock. Memory: a dict kept by the memory store.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import msgspec
import trio

from stockade.errors import InvalidRequest
from stockade.persistence.journal import Store, StoreUnavailable
from stockade.persistence.schema import SCHEMA_VERSION
from stockade.persistence.sqlite_errors import sqlite_errors

__all__ = [
    "BUSY_TIMEOUT_S",
    "ID_HEX_DIGITS",
    "KEY_PREFIX",
    "MAX_NAME_CHARS",
    "NAME_PATTERN",
    "ROLES",
    "KeyRecord",
    "KeyRole",
    "KeyTable",
    "KeyedStore",
    "MemoryKeys",
    "PostgresKeys",
    "SQLiteKeys",
    "check_key_name",
    "check_key_role",
    "make_key",
    "secret_digest",
]

T = TypeVar("T")

KeyRole = Literal["service", "merchant"]
ROLES: tuple[KeyRole, ...] = ("service", "merchant")
KEY_PREFIX = "sk_"
ID_HEX_DIGITS = 16
MAX_NAME_CHARS = 200
#: A key's name: any text without control characters (C0, DEL, C1), in a form that means the
#: same in Python's ``re`` and JSON Schema's regex dialect (so the OpenAPI document says it).
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*(?!\n)$"
_NAME = re.compile(NAME_PATTERN)
#: How long a key table's write waits for the owner's SQLite transaction before giving up.
BUSY_TIMEOUT_S = 5.0

_COLUMNS = "id, name, role, hash, created_at, revoked_at"


class KeyRecord(msgspec.Struct, frozen=True):
    """A row of ``api_keys``: ``digest`` is the hex SHA-256 of the key's secret (never the key);
    times are UNIX seconds; ``revoked_at`` is None while the key works."""

    id: str
    name: str
    role: KeyRole
    digest: str
    created_at: float
    revoked_at: float | None = None


def check_key_role(role: object) -> KeyRole:
    """``role`` if it is a key role, else InvalidRequest."""
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def check_key_name(name: object) -> str:
    """``name`` if it is text of at most 200 characters without control characters, else
    InvalidRequest."""
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not _NAME.search(name):
        raise InvalidRequest(
            f"a key's name must be printable text of at most {MAX_NAME_CHARS} characters"
        )
    return name


def secret_digest(secret: bytes) -> bytes:
    """The SHA-256 that is stored for a key's secret."""
    return hashlib.sha256(secret).digest()


def make_key(role: str, name: str, now: float) -> tuple[KeyRecord, str]:
    """A new key: its row (to store) and the key string (to show once, then forget)."""
    role = check_key_role(role)
    name = check_key_name(name)
    key_id = secrets.token_hex(ID_HEX_DIGITS // 2)
    secret = secrets.token_urlsafe(32)
    record = KeyRecord(key_id, name, role, secret_digest(secret.encode()).hex(), now)
    return record, f"{KEY_PREFIX}{key_id}_{secret}"


class KeyTable(Protocol):
    """Where a store keeps its keys. Every call may raise StoreUnavailable (the database cannot
    be reached right now); none changes anything the store's owner holds."""

    async def schema_version(self) -> int:
        """The store's schema version; 0 for a database that does not exist yet."""
        ...

    async def keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def add(self, record: KeyRecord) -> None: ...

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        """Mark the key revoked at ``at`` unless it already is (idempotent); return its row as
        it is now, or None for an unknown id."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class KeyedStore(Store, Protocol):
    """A store that keeps keys: the memory, SQLite and PostgreSQL stores."""

    def key_table(self) -> KeyTable:
        """A key table over the same database, not yet connected (it connects on first use)."""
        ...

    async def migrate(self) -> None:
        """Take ownership briefly (StoreInUse if another process owns the store), bring the
        schema up to date, and let go: for a database that no server has opened yet."""
        ...


def _record(row: Any) -> KeyRecord:
    key_id, name, role, digest, created_at, revoked_at = row
    return KeyRecord(key_id, name, role, digest, created_at, revoked_at)


class MemoryKeys:
    """Keys in this process (the memory store's): gone when it exits."""

    def __init__(self) -> None:
        self.records: dict[str, KeyRecord] = {}

    async def schema_version(self) -> int:
        await trio.lowlevel.checkpoint()
        return SCHEMA_VERSION

    async def keys(self) -> list[KeyRecord]:
        await trio.lowlevel.checkpoint()
        return sorted(self.records.values(), key=lambda r: (r.created_at, r.id))

    async def add(self, record: KeyRecord) -> None:
        await trio.lowlevel.checkpoint()
        if record.id in self.records:
            raise InvalidRequest(f"key {record.id!r} exists already")
        self.records[record.id] = record

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        await trio.lowlevel.checkpoint()
        record = self.records.get(key_id)
        if record is not None and record.revoked_at is None:
            record = self.records[key_id] = msgspec.structs.replace(record, revoked_at=at)
        return record

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class SQLiteKeys:
    """The ``api_keys`` table of the SQLite file at ``path``, through a connection of its own.

    Each call runs in a worker thread, one at a time; it cannot be cancelled once started (it
    is short: a read, or one write that waits at most ``BUSY_TIMEOUT_S`` for the owner's
    transaction). The connection never creates the file: a missing file is schema version 0.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with sqlite_errors(self.path):  # locked past the timeout, I/O error, no file
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = Path(self.path).absolute().as_uri() + "?mode=rw"
            self._conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False,
                timeout=BUSY_TIMEOUT_S,
            )  # fmt: skip
        return self._conn

    async def schema_version(self) -> int:
        return await self._run(self._schema_version)

    def _schema_version(self) -> int:
        if self._conn is None and not os.path.exists(self.path):
            return 0
        try:
            row = self._connection().execute("SELECT schema_version FROM stockade_state")
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
        found = row.fetchone()
        return 0 if found is None else int(found[0])

    async def keys(self) -> list[KeyRecord]:
        return await self._run(self._keys)

    def _keys(self) -> list[KeyRecord]:
        rows = self._connection().execute(
            f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id"
        )
        return [_record(row) for row in rows]

    async def add(self, record: KeyRecord) -> None:
        await self._run(self._add, record)

    def _add(self, record: KeyRecord) -> None:
        self._connection().execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?)", msgspec.structs.astuple(record)
        )

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        return await self._run(self._revoke, key_id, at)

    def _revoke(self, key_id: str, at: float) -> KeyRecord | None:
        cursor = self._connection().execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? "
            f"RETURNING {_COLUMNS}",
            (at, key_id),
        )
        rows = cursor.fetchall()  # all: the statement (and its transaction) ends once read out
        return _record(rows[0]) if rows else None

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._close, limiter=self._limiter)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresKeys:
    """The ``api_keys`` table of the PostgreSQL database at ``dsn``, through a session of its
    own on an asyncio loop of its own thread (asyncpg is asyncio-only; see postgres.py).

    A lost connection raises StoreUnavailable and the next call reconnects. Cancelling a call
    drops its connection, so no half-done statement is ever reused.
    """

    def __init__(self, dsn: str, *, connect_timeout: float = 10) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._aio: Any = None  # an AsyncioThread, made on first use
        self._conn: Any = None  # asyncpg.Connection, on the loop's thread only

    async def _run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        from stockade._asyncio import AsyncioThread
        from stockade.persistence.postgres_errors import UNREACHABLE

        if self._aio is None:
            self._aio = AsyncioThread("stockade-keys")
        try:
            result: T = await self._aio.run(self._call, fn, *args)
        except UNREACHABLE as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        return result

    async def _call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        import asyncpg

        conn = self._conn
        if conn is None:
            conn = self._conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        try:
            return await fn(conn, *args)
        except BaseException:  # dropped, broken or cancelled mid-statement: start afresh
            self._conn = None
            conn.terminate()
            raise

    async def schema_version(self) -> int:
        return await self._run(self._schema_version)

    @staticmethod
    async def _schema_version(conn: Any) -> int:
        exists = await conn.fetchval("SELECT to_regclass('stockade_state') IS NOT NULL")
        if not exists:
            return 0
        version = await conn.fetchval("SELECT schema_version FROM stockade_state")
        return 0 if version is None else int(version)

    async def keys(self) -> list[KeyRecord]:
        return await self._run(self._keys)

    @staticmethod
    async def _keys(conn: Any) -> list[KeyRecord]:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [_record(tuple(row)) for row in rows]

    async def add(self, record: KeyRecord) -> None:
        await self._run(self._add, record)

    @staticmethod
    async def _add(conn: Any, record: KeyRecord) -> None:
        await conn.execute(
            "INSERT INTO api_keys VALUES ($1, $2, $3, $4, $5, $6)",
            *msgspec.structs.astuple(record),
        )

    async def revoke(self, key_id: str, at: float) -> KeyRecord | None:
        return await self._run(self._revoke, key_id, at)

    @staticmethod
    async def _revoke(conn: Any, key_id: str, at: float) -> KeyRecord | None:
        row = await conn.fetchrow(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 "
            f"RETURNING {_COLUMNS}",
            key_id, at,
        )  # fmt: skip
        return None if row is None else _record(tuple(row))

    async def aclose(self) -> None:
        if self._aio is not None:
            aio, self._aio = self._aio, None
            conn, self._conn = self._conn, None
            from stockade.persistence.postgres_errors import close_on

            await close_on(aio, conn)
