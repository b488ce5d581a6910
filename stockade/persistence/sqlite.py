"""The SQLite store: the embedded default. WAL mode, one connection, one worker thread.

Blocking ``sqlite3`` calls never run on the trio thread: each goes to a worker thread through
``trio.to_thread.run_sync``, one at a time. In ``durable`` mode every commit is fsynced
(``synchronous=FULL``); in ``fast`` mode SQLite syncs at checkpoints only (``NORMAL``), so a
power loss (not a process crash) can lose the last commits.

Only one process may own a database file: the store takes an exclusive ``flock`` on
``<path>.lock`` and a second opener gets :class:`~stockade.errors.StoreInUse` at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import trio

from stockade.errors import CorruptStore, InvalidRequest, StoreInUse, StoreUnavailable
from stockade.persistence.journal import Batch, Snapshot, is_new_batch
from stockade.persistence.keys import SQLiteKeys
from stockade.persistence.rows import BatchRows, batch_rows, order_from_row
from stockade.persistence.schema import SCHEMA_VERSION, STATE_TABLE, migrations_after

__all__ = ["SQLiteStore"]


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise sqlite3's (and the file system's) errors as stockade's. What is worth retrying
    (busy, locked, disk full, an I/O error, a file that cannot be opened) becomes
    StoreUnavailable; a constraint the data breaks, or a file that is not a sound database,
    CorruptStore. A misuse of sqlite3 (ProgrammingError and the like) is a bug: it stays."""
    try:
        yield
    except (sqlite3.OperationalError, OSError) as exc:
        raise StoreUnavailable(f"SQLite: {exc}") from exc
    except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
        raise CorruptStore(f"SQLite refused the data: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise
        raise CorruptStore(f"SQLite: {exc}") from exc  # malformed, or not a database at all


class SQLiteStore:
    """A store in the SQLite file at ``path`` (created if missing)."""

    def __init__(self, path: str, *, durable: bool = True) -> None:
        self.path = path
        self.durable = durable
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    # -- opening ------------------------------------------------------------------------------

    async def load(self) -> Snapshot:
        """Take the file lock, open the database, apply the schema, read everything back."""
        await self._run(self._open)
        snapshot: Snapshot = await self._run(self._load)
        return snapshot

    def _open(self) -> None:
        with _translated():
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreInUse(f"{self.path} is owned by another stockade process") from None
            self._lock_fd = fd
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            except BaseException:
                self._release_lock()
                raise
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(STATE_TABLE)
                conn.execute(
                    "INSERT INTO stockade_state VALUES (1, 0, 0, 0) ON CONFLICT (id) DO NOTHING"
                )
                (version,) = conn.execute("SELECT schema_version FROM stockade_state").fetchone()
                for statement in migrations_after(version):
                    conn.execute(statement)
                conn.execute("UPDATE stockade_state SET schema_version = ?", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
            except BaseException:
                conn.close()
                self._release_lock()
                raise
            self._conn = conn

    async def migrate(self) -> None:
        """Take the file lock (StoreInUse at once if another process owns the file), create or
        bring the schema up to date, and let go. Blocks in a worker thread; not cancellable."""
        try:
            await self._run(self._open)
        finally:
            await self.aclose()

    def key_table(self) -> SQLiteKeys:
        """The file's API keys, through a connection of their own (never the lock)."""
        return SQLiteKeys(self.path)

    def _load(self) -> Snapshot:
        with _translated():
            return self._read()

    def _read(self) -> Snapshot:
        conn = self._connection()
        products = {
            sku: (on_hand, reserved)
            for sku, on_hand, reserved in conn.execute(
                "SELECT sku, on_hand, reserved FROM products"
            )
        }
        orders = [
            order_from_row(row)
            for row in conn.execute(
                "SELECT id, status, lines, created_at, expires_at, idempotency_key FROM orders"
            )
        ]
        (last_seq,) = conn.execute("SELECT last_seq FROM stockade_state").fetchone()
        return Snapshot.of(products, orders, last_seq)

    # -- committing ---------------------------------------------------------------------------

    async def commit(self, batch: Batch) -> None:
        rows = batch_rows(batch)
        await self._run(self._commit, rows)

    def _commit(self, rows: BatchRows) -> None:
        conn = self._connection()
        with _translated():
            conn.execute("BEGIN IMMEDIATE")
            try:
                (last_seq,) = conn.execute("SELECT last_seq FROM stockade_state").fetchone()
                if not is_new_batch(rows.first_seq, rows.last_seq, last_seq):
                    conn.execute("ROLLBACK")
                    return  # already committed: a replay must not double anything
                conn.executemany(
                    "INSERT INTO movements VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows.movements
                )
                # Two steps, because SQLite checks CHECK constraints on an upsert's candidate
                # row (a bare delta) before resolving the conflict: create at zero, then add.
                conn.executemany(
                    "INSERT INTO products VALUES (?, 0, 0) ON CONFLICT (sku) DO NOTHING",
                    [(sku,) for sku, _, _ in rows.product_deltas],
                )
                conn.executemany(
                    "UPDATE products SET on_hand = on_hand + ?, reserved = reserved + ? "
                    "WHERE sku = ?",
                    [
                        (d_on_hand, d_reserved, sku)
                        for sku, d_on_hand, d_reserved in rows.product_deltas
                    ],
                )
                conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", rows.new_orders)
                conn.executemany(
                    "UPDATE orders SET status = ? WHERE id = ?",
                    [(status, order_id) for order_id, status in rows.status_updates],
                )
                conn.execute("UPDATE stockade_state SET last_seq = ?", (rows.last_seq,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._run(self._close)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InvalidRequest("the SQLite store is not open: load() it first")
        return self._conn
