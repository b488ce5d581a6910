"""The PostgreSQL store, through asyncpg on an asyncio loop of its own thread.

asyncpg is asyncio-only and stockade runs on trio, so the store keeps one asyncio loop on a
daemon thread and hands it coroutines; trio waits for each through its token, without tying up
a worker thread. This is the one module of the store layer that touches asyncio.

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
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import trio

from stockade.errors import CorruptStore, StoreInUse, StoreUnavailable
from stockade.errors import StoreLost as StoreLost  # its home before errors.py
from stockade.persistence.journal import Batch, Snapshot, is_new_batch
from stockade.persistence.keys import PostgresKeys
from stockade.persistence.rows import BatchRows, batch_rows, order_from_row
from stockade.persistence.schema import SCHEMA_VERSION, STATE_TABLE, migrations_after

__all__ = ["PostgresStore"]

T = TypeVar("T")

_LOCK = "SELECT pg_advisory_lock(hashtext(current_schema()))"
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext(current_schema()))"
#: What a dropped connection, a connection left in a broken state, or an unreachable server
#: raises in asyncpg. Anything else (a constraint violated, bad data) is a bug: it is not retried.
_UNREACHABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)
#: What a batch or a stored row that breaks the schema's rules raises: the store is corrupt.
_REFUSED = (asyncpg.exceptions.IntegrityConstraintViolationError, asyncpg.exceptions.DataError)


def _swallow(future: Any) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as lost


class _AsyncioThread:
    """An asyncio loop on a daemon thread; :meth:`run` awaits a coroutine on it from trio."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="stockade-asyncpg", daemon=True
        )
        self._thread.start()

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        future.add_done_callback(lambda _: token.run_sync_soon(done.set))
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()  # its outcome is dropped: the caller retries or is shutting down
            future.add_done_callback(_swallow)
            raise
        return future.result()

    async def aclose(self, conn: asyncpg.Connection | None) -> None:
        """Close ``conn`` on the loop (a dead connection needs nothing), then stop the loop."""
        if conn is not None:
            with contextlib.suppress(*_UNREACHABLE):
                await self.run(conn.close)
        self.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class PostgresStore:
    """A store in the PostgreSQL database at ``dsn`` (tables in the DSN's search path)."""

    def __init__(self, dsn: str, *, durable: bool = True, connect_timeout: float = 10) -> None:
        self.dsn = dsn
        self.durable = durable
        self.connect_timeout = connect_timeout
        self._aio: _AsyncioThread | None = None
        self._conn: asyncpg.Connection | None = None
        self._epoch: int | None = None

    async def _run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        if self._aio is None:
            self._aio = _AsyncioThread()
        return await self._aio.run(fn, *args)

    # -- opening ------------------------------------------------------------------------------

    async def load(self) -> Snapshot:
        """Connect, wait for ownership (a standby blocks here), migrate, read everything."""
        try:
            snapshot: Snapshot = await self._run(self._load)
        except _UNREACHABLE as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        except _REFUSED as exc:
            raise CorruptStore(f"PostgreSQL: {exc}") from exc
        return snapshot

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        if not self.durable:
            await conn.execute("SET synchronous_commit = off")
        return conn

    async def migrate(self) -> None:
        """Take ownership if nobody has it (StoreInUse at once if another instance does), bring
        the schema up to date, and let go. Does not bump the owner epoch: nothing is written
        but the schema."""
        try:
            await self._run(self._migrate)
        except _UNREACHABLE as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        finally:
            await self.aclose()

    def key_table(self) -> PostgresKeys:
        """The database's API keys, through a session of their own (never the owner's lock)."""
        return PostgresKeys(self.dsn, connect_timeout=self.connect_timeout)

    async def _migrate(self) -> None:
        conn = self._conn = await self._connect()
        if not await conn.fetchval(_TRY_LOCK):
            raise StoreInUse("the PostgreSQL store is owned by another stockade instance")
        async with conn.transaction():
            await self._apply_schema(conn)

    @staticmethod
    async def _apply_schema(conn: asyncpg.Connection) -> None:
        await conn.execute(STATE_TABLE)
        await conn.execute(
            "INSERT INTO stockade_state VALUES (1, 0, 0, 0) ON CONFLICT (id) DO NOTHING"
        )
        version = await conn.fetchval("SELECT schema_version FROM stockade_state")
        for statement in migrations_after(version):
            await conn.execute(statement)
        await conn.execute("UPDATE stockade_state SET schema_version = $1", SCHEMA_VERSION)

    async def _load(self) -> Snapshot:
        conn = self._conn = await self._connect()
        await conn.execute(_LOCK)  # blocks while another instance owns the store
        async with conn.transaction():
            await self._apply_schema(conn)
            self._epoch = await conn.fetchval(
                "UPDATE stockade_state SET owner_epoch = owner_epoch + 1 RETURNING owner_epoch"
            )
        products = {
            r["sku"]: (r["on_hand"], r["reserved"])
            for r in await conn.fetch("SELECT sku, on_hand, reserved FROM products")
        }
        orders = [
            order_from_row(tuple(r))
            for r in await conn.fetch(
                "SELECT id, status, lines, created_at, expires_at, idempotency_key FROM orders"
            )
        ]
        last_seq = await conn.fetchval("SELECT last_seq FROM stockade_state")
        return Snapshot.of(products, orders, last_seq)

    # -- committing ---------------------------------------------------------------------------

    async def commit(self, batch: Batch) -> None:
        rows = batch_rows(batch)
        try:
            await self._run(self._commit, rows)
        except _UNREACHABLE as exc:
            await self._discard_connection()  # the next attempt reconnects
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        except _REFUSED as exc:
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

    async def _commit(self, rows: BatchRows) -> None:
        conn = self._conn if self._conn is not None else await self._reconnect()
        async with conn.transaction():
            epoch, last_seq = await conn.fetchrow(
                "SELECT owner_epoch, last_seq FROM stockade_state WHERE id = 1 FOR SHARE"
            )
            if epoch != self._epoch:
                raise StoreLost(f"owner epoch is {epoch}, ours was {self._epoch}")
            if not is_new_batch(rows.first_seq, rows.last_seq, last_seq):
                return  # already committed: a replay must not double anything
            await conn.copy_records_to_table("movements", records=rows.movements)
            await conn.executemany(
                "INSERT INTO products VALUES ($1, 0, 0) ON CONFLICT (sku) DO NOTHING",
                [(sku,) for sku, _, _ in rows.product_deltas],
            )
            await conn.executemany(
                "UPDATE products SET on_hand = on_hand + $2, reserved = reserved + $3 "
                "WHERE sku = $1",
                rows.product_deltas,
            )
            if rows.new_orders:
                await conn.copy_records_to_table("orders", records=rows.new_orders)
            await conn.executemany(
                "UPDATE orders SET status = $2 WHERE id = $1", rows.status_updates
            )
            await conn.execute("UPDATE stockade_state SET last_seq = $1", rows.last_seq)

    # -- closing ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._aio is not None:
            aio, self._aio = self._aio, None
            conn, self._conn = self._conn, None
            await aio.aclose(conn)
