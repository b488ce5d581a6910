"""The SQLite store: the embedded default. WAL mode, a writer connection and a reader.

Blocking ``sqlite3`` calls never run on the trio thread: the writer's go to a worker thread
through ``trio.to_thread.run_sync``, one at a time; reads of the history (orders that left
memory, order listings, movements) go to a second connection on a worker thread of their own,
so a read never waits behind a commit's fsync (WAL lets readers and the writer run at once).
In ``durable`` mode every commit is fsynced (``synchronous=FULL``); in ``fast`` mode SQLite
syncs at checkpoints only (``NORMAL``), so a power loss (not a process crash) can lose the last
commits.

Only one process may own a database file: the store takes an exclusive ``flock`` on
``<path>.lock`` and a second opener gets :class:`~stockade.errors.StoreInUse` at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from stockade.engine.feed import EventRow, event_from_row
from stockade.engine.models import Event as FeedEvent
from stockade.engine.models import Movement, Order
from stockade.engine.storage import OrderQuery, Snapshot
from stockade.errors import InvalidRequest, StoreInUse
from stockade.persistence import sql
from stockade.persistence.journal import Batch, is_new_batch
from stockade.persistence.keys import SQLiteKeys
from stockade.persistence.outbox import (
    feed_events,
    flipped,
    low_stock_rules,
    update_low_stock,
)
from stockade.persistence.pages import PAGES_PER_READ, page_events, pages_of
from stockade.persistence.rows import (
    BatchRows,
    batch_rows,
    channel_from_row,
    channel_row,
    key_from_row,
    location_from_row,
    movement_from_row,
    order_from_row,
    rules_from_row,
)
from stockade.persistence.schema import (
    INIT_STATE,
    SCHEMA_VERSION,
    STATE_TABLE,
    migrations_after,
)
from stockade.persistence.sinks import SINK_COLUMNS, SinkRecord
from stockade.persistence.sqlite_errors import sqlite_errors
from stockade.persistence.subscriptions import SQLiteTable
from stockade.persistence.webhooks import SQLiteWebhooks

__all__ = ["SQLiteStore"]

T = TypeVar("T")


class SQLiteStore:
    """A store in the SQLite file at ``path`` (created if missing)."""

    keeps_history = True

    def __init__(self, path: str, *, durable: bool = True, feed: bool = True) -> None:
        self.path = path
        self.durable = durable
        self.feed = feed
        self._inactive: set[str] = set()
        self._low_stock: dict[str, int] = {}  # each product's low_stock_at rule, for the feed
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def read() -> T:
            if self._reader is None:
                raise InvalidRequest("the SQLite store is not open: load() it first")
            with sqlite_errors():
                return fn(self._reader)

        return await trio.to_thread.run_sync(read, limiter=self._read_limiter)

    # -- opening ------------------------------------------------------------------------------

    async def load(self, since: float) -> Snapshot:
        """Take the file lock, open the database, apply the schema, read what the engine
        starts from (see Store.load)."""
        await self._run(self._open)
        return await self._run(self._load, since)

    def _open(self) -> None:
        with sqlite_errors():
            self._open_file()

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

    def webhook_table(self) -> SQLiteWebhooks:
        """The file's webhook subscriptions, on the owner's writer connection between commits
        (open the store with load() first)."""
        return SQLiteWebhooks(self._side)

    def sink_table(self) -> SQLiteTable[SinkRecord]:
        """The file's broker sinks, as :meth:`webhook_table` keeps webhooks."""
        return SQLiteTable(self._side, SINK_COLUMNS)

    async def _side(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._connection()
            with sqlite_errors():
                return fn(conn)

        return await self._run(run)

    def _open_file(self) -> None:
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
            conn.execute(INIT_STATE)
            (version,) = conn.execute("SELECT schema_version FROM stockade_state").fetchone()
            for statement in migrations_after(version):
                conn.execute(statement)
            conn.execute("UPDATE stockade_state SET schema_version = ?", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
            self._reader = sqlite3.connect(self.path, check_same_thread=False)
        except BaseException:
            conn.close()
            self._release_lock()
            raise
        self._conn = conn

    def _load(self, since: float) -> Snapshot:
        with sqlite_errors():
            return self._read_snapshot(since)

    def _read_snapshot(self, since: float) -> Snapshot:
        conn = self._connection()
        last_seq, last_event = conn.execute(
            "SELECT last_seq, last_event_seq FROM stockade_state"
        ).fetchone()
        locations = [location_from_row(r) for r in conn.execute(sql.LOAD_LOCATIONS)]
        self._inactive = {x.id for x in locations if not x.active}
        rules = [rules_from_row(r) for r in conn.execute(sql.LOAD_RULES)]
        self._low_stock = low_stock_rules(rules)
        return Snapshot(
            stock=conn.execute(sql.LOAD_STOCK).fetchall(),
            orders=[order_from_row(r) for r in conn.execute(sql.LOAD_ORDERS, (since, since))],
            last_seq=last_seq,
            last_event_seq=last_event,
            locations=locations,
            channels=[channel_from_row(r) for r in conn.execute(sql.LOAD_CHANNELS)],
            keys=[key_from_row(r) for r in conn.execute(sql.LOAD_KEYS, (since,))],
            rules=rules,
            counts=conn.execute(sql.LOAD_COUNTS).fetchall(),
        )

    # -- committing ---------------------------------------------------------------------------

    async def commit(self, batch: Batch) -> list[EventRow]:
        rows = batch_rows(batch)
        return await self._run(self._commit, batch, rows)

    def _commit(self, batch: Batch, rows: BatchRows) -> list[EventRow]:
        conn = self._connection()
        events: list[EventRow] = []
        with sqlite_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                last_seq, last_event = conn.execute(
                    "SELECT last_seq, last_event_seq FROM stockade_state"
                ).fetchone()
                if not is_new_batch(rows.first_seq, rows.last_seq, last_seq):
                    conn.execute("ROLLBACK")
                    return []  # already committed: a replay must not double anything
                _write_rows(conn.executemany, rows)
                conn.execute("UPDATE stockade_state SET last_seq = ?", (rows.last_seq,))
                if self.feed:
                    before = set(self._inactive)
                    toggled = flipped(rows.locations, before)
                    self._inactive ^= toggled
                    update_low_stock(self._low_stock, rows.rules)
                    skus = {sku for sku, _, _, _ in rows.stock_deltas}
                    if toggled:
                        statement = sql.SKUS_AT.format(", ".join("?" * len(toggled)))
                        skus.update(sku for (sku,) in conn.execute(statement, sorted(toggled)))
                    events = feed_events(
                        batch.events, rows.stock_deltas, _stock_of(conn, skus), self._inactive,
                        last_event + 1, self._low_stock, inactive_before=before,
                    )  # fmt: skip
                    if events:
                        conn.executemany(sql.INSERT_PAGE, pages_of(events))
                        conn.execute(sql.SET_LAST_EVENT, (events[-1][0],))
                conn.execute("COMMIT")
                return events
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- history ------------------------------------------------------------------------------

    async def events(
        self, after: int, limit: int, types: tuple[str, ...] | None = None
    ) -> list[FeedEvent]:
        statement, params = sql.pages_after(types)

        def read(conn: sqlite3.Connection) -> list[FeedEvent]:
            out: list[EventRow] = []
            cursor = after
            while True:
                rows = conn.execute(statement, (cursor, *params, PAGES_PER_READ)).fetchall()
                found, full = page_events(rows, after, limit - len(out), types)
                out += found
                if full or len(rows) < PAGES_PER_READ:
                    return [event_from_row(row) for row in out]
                cursor = rows[-1][0]

        return await self._read(read)

    async def feed_bounds(self) -> tuple[int, int]:
        def read(conn: sqlite3.Connection) -> tuple[int, int]:
            first, last = conn.execute(sql.FEED_BOUNDS).fetchone()
            return (last + 1 if first is None else first), last

        return await self._read(read)

    async def prune_events(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest pages of events, all older than ``before``."""

        def prune() -> int:
            conn = self._connection()
            with sqlite_errors(), conn:  # one short transaction per chunk, between commits
                conn.execute("BEGIN IMMEDIATE")
                return conn.execute(sql.PRUNE_EVENTS, (limit, limit, before)).rowcount

        return await self._run(prune)

    async def order(self, order_id: str) -> Order | None:
        def read(conn: sqlite3.Connection) -> Order | None:
            row = conn.execute(sql.GET_ORDER, (order_id,)).fetchone()
            return None if row is None else order_from_row(row)

        return await self._read(read)

    async def orders(self, query: OrderQuery) -> list[Order]:
        statement, params = sql.orders_page(query)

        def read(conn: sqlite3.Connection) -> list[Order]:
            if (
                query.after is not None
                and not conn.execute(sql.ORDER_EXISTS, (query.after,)).fetchone()
            ):
                raise InvalidRequest(f"after: no order {query.after!r}")
            return [order_from_row(r) for r in conn.execute(statement, params)]

        return await self._read(read)

    async def movements(self, sku: str, after: int | None, limit: int) -> list[Movement]:
        def read(conn: sqlite3.Connection) -> list[Movement]:
            rows = conn.execute(sql.MOVEMENTS, sql.movements_params(sku, after, limit))
            return [movement_from_row(r) for r in rows]

        return await self._read(read)

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._run(self._close)

    def _close(self) -> None:
        for conn in (self._conn, self._reader):
            if conn is not None:
                conn.close()
        self._conn = self._reader = None
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


def _stock_of(conn: sqlite3.Connection, skus: set[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """The stock rows of ``skus``, ``{sku: {location: (on_hand, reserved)}}``."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    ordered = sorted(skus)
    for start in range(0, len(ordered), 500):  # SQLite bounds the parameters of a statement
        chunk = ordered[start : start + 500]
        statement = sql.STOCK_OF.format(", ".join("?" * len(chunk)))
        for sku, location, on_hand, reserved in conn.execute(statement, chunk):
            out.setdefault(sku, {})[location] = (on_hand, reserved)
    return out


def _write_rows(executemany: Callable[[str, Any], Any], rows: BatchRows) -> None:
    """Write a batch's rows with ``executemany(sql, params)`` (``?`` placeholders)."""
    executemany(sql.INSERT_MOVEMENT, rows.movements)
    executemany(sql.UPSERT_STOCK_ROW, [(sku, loc) for sku, loc, _, _ in rows.stock_deltas])
    executemany(sql.UPDATE_STOCK, [(dh, dr, sku, loc) for sku, loc, dh, dr in rows.stock_deltas])
    executemany(sql.INSERT_ORDER, rows.new_orders)
    executemany(
        sql.UPDATE_ORDER,
        [sql.update_order_params(row) for row in rows.updated_orders],
    )
    executemany(sql.UPSERT_KEY, rows.keys)
    executemany(sql.UPSERT_LOCATION, [(x.id, x.name, x.priority, x.active) for x in rows.locations])
    executemany(sql.UPSERT_CHANNEL, [channel_row(c) for c in rows.channels])
    for statement, params in sql.rules_writes(rows):
        if params:
            executemany(statement, params)
