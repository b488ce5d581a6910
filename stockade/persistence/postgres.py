"""The PostgreSQL store, through asyncpg on an asyncio loop of its own thread.

asyncpg is asyncio-only and stockade runs on trio, so the store keeps one asyncio loop on a
daemon thread (:class:`~stockade._asyncio.AsyncioThread`) and hands it coroutines. This is the
one module of the store layer that touches asyncio.

One owner per store: the writer's own session takes ``pg_advisory_lock`` (keyed by schema) and
bumps ``owner_epoch``. A second instance blocks in :meth:`load` as a hot standby until the first
one's session ends. Every batch transaction reads the epoch ``FOR SHARE`` and refuses to write
if another owner has taken over since, so a stale owner can never land a batch.

Connection failures raise :class:`~stockade.errors.StoreUnavailable` (the journal retries); the
next commit reconnects, takes the lock again without waiting, and checks the epoch is still its
own. A batch the schema refuses (a constraint broken) raises
:class:`~stockade.errors.CorruptStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg

from stockade._asyncio import AsyncioThread
from stockade.engine.feed import EventRow, event_from_row
from stockade.engine.models import Event as FeedEvent
from stockade.engine.models import Movement, Order
from stockade.engine.storage import OrderQuery, Snapshot
from stockade.errors import CorruptStore, InvalidRequest, StoreInUse, StoreUnavailable
from stockade.errors import StoreLost as StoreLost  # its home before errors.py
from stockade.persistence import sql
from stockade.persistence.journal import Batch, is_new_batch
from stockade.persistence.keys import PostgresKeys
from stockade.persistence.outbox import (
    feed_events,
    flipped,
    low_stock_rules,
    update_low_stock,
)
from stockade.persistence.pages import PAGES_PER_READ, page_events, pages_of
from stockade.persistence.postgres_errors import REFUSED, UNREACHABLE, close_on
from stockade.persistence.rows import (
    ORDER_COLUMNS,
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
from stockade.persistence.subscriptions import PostgresTable
from stockade.persistence.webhooks import PostgresWebhooks

__all__ = ["PostgresStore"]

T = TypeVar("T")

_LOCK = "SELECT pg_advisory_lock(hashtext(current_schema()))"
_INSERT_STOCK = sql.numbered(sql.INSERT_STOCK)
_UPDATE_ORDER = sql.numbered(sql.UPDATE_ORDER)
_PRUNE_EVENTS = sql.numbered(sql.PRUNE_EVENTS)
_UPSERT_KEY = sql.numbered(sql.UPSERT_KEY)
_UPSERT_LOCATION = sql.numbered(sql.UPSERT_LOCATION)
_UPSERT_CHANNEL = sql.numbered(sql.UPSERT_CHANNEL)
_GET_ORDER = sql.numbered(sql.GET_ORDER)
_ORDER_EXISTS = sql.numbered(sql.ORDER_EXISTS)
_MOVEMENTS = sql.numbered(sql.MOVEMENTS)
_ORDER_COLUMNS = [c.strip() for c in ORDER_COLUMNS.split(",")]
_RULES_SQL = {
    statement: sql.numbered(statement)
    for statement in (sql.UPSERT_RULES, sql.DELETE_RULES, sql.CLEAR_COUNTS, sql.UPSERT_COUNT,
                      sql.DELETE_COUNT, sql.CAP_COUNT)
}  # fmt: skip
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext(current_schema()))"


class PostgresStore:
    """A store in the PostgreSQL database at ``dsn`` (tables in the DSN's search path).

    History reads (orders that left memory, listings, movements) use a small pool of their own
    connections, so they never wait behind the writer's commits. With ``standby=False``,
    :meth:`load` raises StoreInUse at once when another instance owns the store, instead of
    waiting for it as a hot standby (for one-off commands such as ``stockade import``)."""

    keeps_history = True

    def __init__(
        self, dsn: str, *, durable: bool = True, connect_timeout: float = 10, feed: bool = True,
        standby: bool = True,
    ) -> None:  # fmt: skip
        self.dsn = dsn
        self.standby = standby
        self.durable = durable
        self.feed = feed
        self._inactive: set[str] = set()
        self._low_stock: dict[str, int] = {}  # each product's low_stock_at rule, for the feed
        self.connect_timeout = connect_timeout
        self._aio: AsyncioThread | None = None
        self._conn: asyncpg.Connection | None = None
        self._readers: asyncpg.Pool | None = None
        self._readers_lock: asyncio.Lock | None = None  # made on the store's loop
        self._epoch: int | None = None

    async def _run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        if self._aio is None:
            self._aio = AsyncioThread("stockade-asyncpg")
        return await self._aio.run(fn, *args)

    # -- opening ------------------------------------------------------------------------------

    async def load(self, since: float) -> Snapshot:
        """Connect, wait for ownership (a standby blocks here), migrate, read what the engine
        starts from (see Store.load)."""
        try:
            snapshot: Snapshot = await self._run(self._load, since)
        except UNREACHABLE as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        except REFUSED as exc:
            raise CorruptStore(f"PostgreSQL: {exc}") from exc
        return snapshot

    async def migrate(self) -> None:
        """Take ownership if nobody has it (StoreInUse at once if another instance does), bring
        the schema up to date, and let go. Does not bump the owner epoch: nothing is written
        but the schema."""
        try:
            await self._run(self._migrate)
        except UNREACHABLE as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        finally:
            await self.aclose()

    def key_table(self) -> PostgresKeys:
        """The database's API keys, through a session of their own (never the owner's lock)."""
        return PostgresKeys(self.dsn, connect_timeout=self.connect_timeout)

    def webhook_table(self) -> PostgresWebhooks:
        """The database's webhook subscriptions, through the readers' pool (open the store with
        load() first: only the owner writes them)."""
        return PostgresWebhooks(self._read)

    def sink_table(self) -> PostgresTable[SinkRecord]:
        """The database's broker sinks, as :meth:`webhook_table` keeps webhooks."""
        return PostgresTable(self._read, SINK_COLUMNS)

    async def _migrate(self) -> None:
        conn = self._conn = await self._connect()
        if not await conn.fetchval(_TRY_LOCK):
            raise StoreInUse("the PostgreSQL store is owned by another stockade instance")
        async with conn.transaction():
            await self._apply_schema(conn)

    @staticmethod
    async def _apply_schema(conn: asyncpg.Connection) -> None:
        await conn.execute(STATE_TABLE)
        await conn.execute(INIT_STATE)
        version = await conn.fetchval("SELECT schema_version FROM stockade_state")
        for statement in migrations_after(version):
            await conn.execute(statement)
        await conn.execute("UPDATE stockade_state SET schema_version = $1", SCHEMA_VERSION)

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        # The writer runs the same few statements thousands of times a second: plan each once.
        # Left to choose, PostgreSQL re-plans the stock move (its arrays make a generic plan
        # look dearer than a custom one) at every commit: measured, 120 µs of backend CPU.
        settings = ["plan_cache_mode = force_generic_plan"]
        if not self.durable:
            settings.append("synchronous_commit = off")
        await conn.execute("; ".join(f"SET {setting}" for setting in settings))
        if self.feed:
            # The feed's pages compress ~10x; lz4 does it at a third of pglz's CPU. A server
            # built without lz4 (or older than PostgreSQL 14) refuses: pglz, the default, then.
            with contextlib.suppress(asyncpg.exceptions.PostgresError):
                await conn.execute("SET default_toast_compression = lz4")
        return conn

    async def _load(self, since: float) -> Snapshot:
        conn = self._conn = await self._connect()
        if self.standby:
            await conn.execute(_LOCK)  # blocks while another instance owns the store
        elif not await conn.fetchval(_TRY_LOCK):
            raise StoreInUse("the PostgreSQL store is owned by another stockade instance")
        async with conn.transaction():
            await self._apply_schema(conn)
            self._epoch = await conn.fetchval(
                "UPDATE stockade_state SET owner_epoch = owner_epoch + 1 RETURNING owner_epoch"
            )
        locations = [location_from_row(tuple(r)) for r in await conn.fetch(sql.LOAD_LOCATIONS)]
        self._inactive = {x.id for x in locations if not x.active}
        rules = [rules_from_row(tuple(r)) for r in await conn.fetch(sql.LOAD_RULES)]
        self._low_stock = low_stock_rules(rules)
        return Snapshot(
            stock=[tuple(r) for r in await conn.fetch(sql.LOAD_STOCK)],
            orders=[
                order_from_row(tuple(r))
                for r in await conn.fetch(sql.numbered(sql.LOAD_ORDERS), since, since)
            ],
            last_seq=await conn.fetchval("SELECT last_seq FROM stockade_state"),
            last_event_seq=await conn.fetchval("SELECT last_event_seq FROM stockade_state"),
            locations=locations,
            channels=[channel_from_row(tuple(r)) for r in await conn.fetch(sql.LOAD_CHANNELS)],
            keys=[
                key_from_row(tuple(r)) for r in await conn.fetch(sql.numbered(sql.LOAD_KEYS), since)
            ],
            rules=rules,
            counts=[tuple(r) for r in await conn.fetch(sql.LOAD_COUNTS)],
        )

    # -- committing ---------------------------------------------------------------------------

    async def commit(self, batch: Batch) -> list[EventRow]:
        rows = batch_rows(batch)
        try:
            return await self._run(self._commit, batch, rows)
        except UNREACHABLE as exc:
            await self._discard_connection()  # the next attempt reconnects
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        except REFUSED as exc:
            raise CorruptStore(f"PostgreSQL refused the batch: {exc}") from exc

    async def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._aio is not None:
            await self._aio.run(self._terminate, conn)

    @staticmethod
    async def _terminate(conn: asyncpg.Connection) -> None:
        conn.terminate()  # no round trip: the connection may be half-broken

    async def _reconnect(self) -> asyncpg.Connection:
        conn = await self._connect()
        if not await conn.fetchval(_TRY_LOCK):
            await conn.close()
            raise StoreLost("another stockade instance owns this store now")
        self._conn = conn
        return conn

    async def _commit(self, batch: Batch, rows: BatchRows) -> list[EventRow]:
        conn = self._conn if self._conn is not None else await self._reconnect()
        async with conn.transaction():
            epoch, last_seq, last_event = await conn.fetchrow(
                "SELECT owner_epoch, last_seq, last_event_seq FROM stockade_state "
                "WHERE id = 1 FOR SHARE"
            )
            if epoch != self._epoch:
                raise StoreLost(f"owner epoch is {epoch}, ours was {self._epoch}")
            if not is_new_batch(rows.first_seq, rows.last_seq, last_seq):
                return []  # already committed: a replay must not double anything
            await conn.copy_records_to_table("movements", records=rows.movements)
            deltas = rows.stock_deltas
            reported = list(dict.fromkeys(sku for sku, _, _, _ in deltas)) if self.feed else None
            toggled = flipped(rows.locations, self._inactive) if self.feed else set()
            if toggled and reported is not None:  # a location changed side: its every product
                found = await conn.fetch(sql.SKUS_AT_PG, sorted(toggled))
                reported = list(dict.fromkeys([*reported, *(r[0] for r in found)]))
            after = await self._move_stock(conn, deltas, reported)
            if rows.new_orders:
                await conn.copy_records_to_table(
                    "orders", records=rows.new_orders, columns=_ORDER_COLUMNS
                )
            await conn.executemany(
                _UPDATE_ORDER,
                [sql.update_order_params(row) for row in rows.updated_orders],
            )
            await conn.executemany(_UPSERT_KEY, rows.keys)
            await conn.executemany(
                _UPSERT_LOCATION, [(x.id, x.name, x.priority, x.active) for x in rows.locations]
            )
            await conn.executemany(_UPSERT_CHANNEL, [channel_row(c) for c in rows.channels])
            for statement, params in sql.rules_writes(rows):
                if params:
                    await conn.executemany(_RULES_SQL[statement], params)
            if not self.feed:
                await conn.execute("UPDATE stockade_state SET last_seq = $1", rows.last_seq)
                return []
            before = set(self._inactive)
            self._inactive = before ^ toggled
            update_low_stock(self._low_stock, rows.rules)
            events = feed_events(
                batch.events,
                deltas,
                after,
                self._inactive,
                last_event + 1,
                self._low_stock,
                inactive_before=before,
            )
            if events:  # the pages ride with the state row's update: no round trip of their own
                pages = [list(column) for column in zip(*pages_of(events), strict=True)]
                await conn.execute(sql.FINISH_BATCH_PG, rows.last_seq, events[-1][0], *pages)
            else:
                await conn.execute("UPDATE stockade_state SET last_seq = $1", rows.last_seq)
            return events

    @staticmethod
    async def _move_stock(
        conn: asyncpg.Connection, deltas: list[tuple[str, str, int, int]],
        reported: list[str] | None,
    ) -> dict[str, dict[str, tuple[int, int]]]:  # fmt: skip
        """Add the batch's summed ``deltas`` to the stock rows, making the missing ones; return
        ``{sku: {location: (on_hand, reserved)}}`` after it: the rows moved, and every row of
        the ``reported`` skus (the feed's: what its events report). One round trip, and one
        more for a batch that stocks a (sku, location) for the first time."""
        after: dict[str, dict[str, tuple[int, int]]] = {}
        if not deltas and not reported:
            return after
        skus, locations, d_on_hand, d_reserved = (
            [list(c) for c in zip(*deltas, strict=True)] if deltas else ([], [], [], [])
        )
        if reported:
            found = await conn.fetch(
                sql.MOVE_AND_READ_STOCK_PG, skus, locations, d_on_hand, d_reserved, reported
            )
        else:
            found = await conn.fetch(sql.MOVE_STOCK_PG, skus, locations, d_on_hand, d_reserved)
        for sku, location, on_hand, reserved in found:
            after.setdefault(sku, {})[location] = (on_hand, reserved)
        new = [d for d in deltas if d[1] not in after.get(d[0], {})]
        if new:  # a new row starts at zero: the deltas are its values (its CHECKs apply)
            await conn.executemany(_INSERT_STOCK, new)
            for sku, location, on_hand, reserved in new:
                after.setdefault(sku, {})[location] = (on_hand, reserved)
        return after

    # -- history ------------------------------------------------------------------------------

    async def _read(self, fn: Callable[[asyncpg.Pool], Coroutine[Any, Any, T]]) -> T:
        async def read() -> T:
            pool = self._readers if self._readers is not None else await self._open_readers()
            return await fn(pool)

        try:
            return await self._run(read)
        except UNREACHABLE as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc

    async def _open_readers(self) -> asyncpg.Pool:
        """The readers' pool, made once (on the store's loop) however many reads find none:
        a second pool made meanwhile would never be closed, nor its connections."""
        if self._readers_lock is None:
            self._readers_lock = asyncio.Lock()
        async with self._readers_lock:
            if self._readers is None:
                self._readers = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=4, timeout=self.connect_timeout
                )
            return self._readers

    async def order(self, order_id: str) -> Order | None:
        async def read(pool: asyncpg.Pool) -> Order | None:
            row = await pool.fetchrow(_GET_ORDER, order_id)
            return None if row is None else order_from_row(tuple(row))

        return await self._read(read)

    async def orders(self, query: OrderQuery) -> list[Order]:
        statement, params = sql.orders_page(query)

        async def read(pool: asyncpg.Pool) -> list[Order]:
            if query.after is not None and not await pool.fetchval(_ORDER_EXISTS, query.after):
                raise InvalidRequest(f"after: no order {query.after!r}")
            rows = await pool.fetch(sql.numbered(statement), *params)
            return [order_from_row(tuple(r)) for r in rows]

        return await self._read(read)

    async def movements(self, sku: str, after: int | None, limit: int) -> list[Movement]:
        async def read(pool: asyncpg.Pool) -> list[Movement]:
            rows = await pool.fetch(_MOVEMENTS, *sql.movements_params(sku, after, limit))
            return [movement_from_row(tuple(r)) for r in rows]

        return await self._read(read)

    async def events(
        self, after: int, limit: int, types: tuple[str, ...] | None = None
    ) -> list[FeedEvent]:
        statement, params = sql.pages_after(types)
        statement = sql.numbered(statement)

        async def read(pool: asyncpg.Pool) -> list[FeedEvent]:
            out: list[EventRow] = []
            cursor = after
            while True:
                rows = await pool.fetch(statement, cursor, *params, PAGES_PER_READ)
                found, full = page_events(rows, after, limit - len(out), types)
                out += found
                if full or len(rows) < PAGES_PER_READ:
                    return [event_from_row(row) for row in out]
                cursor = rows[-1][0]

        return await self._read(read)

    async def feed_bounds(self) -> tuple[int, int]:
        async def read(pool: asyncpg.Pool) -> tuple[int, int]:
            first, last = await pool.fetchrow(sql.FEED_BOUNDS)
            return (last + 1 if first is None else first), last

        return await self._read(read)

    async def prune_events(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest pages of events, all older than ``before``."""

        async def prune(pool: asyncpg.Pool) -> int:
            status = await pool.execute(_PRUNE_EVENTS, limit, limit, before)
            return int(status.split()[-1])  # "DELETE <count>"

        return await self._read(prune)

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._aio is None:
            return
        aio, self._aio = self._aio, None
        if self._readers is not None:
            pool, self._readers = self._readers, None
            with contextlib.suppress(*UNREACHABLE):
                await aio.run(pool.close)
        self._readers_lock = None  # bound to this loop, which stops now
        conn, self._conn = self._conn, None
        await close_on(aio, conn)
