"""PostgreSQL for the benches: where it is, a schema per contender, and the row-lock contender.

The row-lock contender is what most shops build first: one transaction per order that runs
``UPDATE stock SET on_hand = on_hand - qty WHERE sku = $1 AND on_hand >= qty`` for each line (in
sku order, so two orders never deadlock), gives up (ROLLBACK) when any line updates no row, and
otherwise INSERTs the order; asyncpg, a connection pool, commit per order. The stock table has
no CHECK constraint: the conditional UPDATE alone must keep it from going below zero, and the
verification would see it if it did not.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import asyncpg

from bench.contenders.base import Contender, Market, Outcome, Place, StoreReport, reachable
from bench.workloads import Lines

__all__ = [
    "POSTGRES_DSN",
    "PostgresContender",
    "RowLockPostgres",
    "in_asyncio",
    "reset_schema",
    "with_schema",
]

POSTGRES_DSN = os.environ.get(
    "STOCKADE_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
POOL_SIZE = 50  # PostgreSQL's default max_connections is 100

T = TypeVar("T")


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"


async def reset_schema(dsn: str, schema: str, *, create: bool = True) -> None:
    """Drop ``schema`` with everything in it, and create it empty unless ``create`` is false."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if create:
            await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()


async def in_asyncio(job: Callable[[], Awaitable[T]]) -> T:
    """Run ``job`` on a fresh asyncio loop in a worker thread (asyncpg from trio code)."""

    def run() -> T:
        async def main() -> T:
            return await job()

        return asyncio.run(main())

    return await anyio.to_thread.run_sync(run)


def postgres_unavailable(dsn: str) -> str | None:
    parts = urllib.parse.urlsplit(dsn)
    why = reachable(parts.hostname or "127.0.0.1", parts.port or 5432)
    if why is not None:
        return f"PostgreSQL: {why}"
    try:
        asyncio.run(_ping(dsn))
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {dsn} refused: {exc!r}"
    return None


async def _ping(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.close()


class PostgresContender(Contender):
    """A contender whose runs each get a fresh ``schema`` in the PostgreSQL at ``dsn``; skipped
    when none answers, the schema dropped after the last run."""

    schema: str

    def __init__(self, dsn: str = POSTGRES_DSN) -> None:
        self.dsn = dsn

    def prepare(self) -> str | None:
        return postgres_unavailable(self.dsn)

    def finish(self) -> None:
        asyncio.run(reset_schema(self.dsn, self.schema, create=False))


class RowLockPostgres(PostgresContender):
    name = "pg-rowlock"
    description = "PostgreSQL row lock: conditional UPDATE + INSERT per order, asyncpg pool"
    backend = "asyncio"
    schema = "stockade_bench_rowlock"

    @asynccontextmanager
    async def market(self, run: str, stock: dict[str, int]) -> AsyncIterator[Market]:
        await reset_schema(self.dsn, self.schema)
        dsn = with_schema(self.dsn, self.schema)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "CREATE TABLE stock (sku TEXT PRIMARY KEY, on_hand BIGINT NOT NULL);"
                "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, lines JSONB NOT NULL)"
            )
            await conn.copy_records_to_table("stock", records=list(stock.items()))
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=POOL_SIZE)
        try:
            yield RowLockMarket(pool)
        finally:
            await pool.close()


class RowLockMarket(Market):
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def caller(self) -> Place:
        return self.place

    async def place(self, lines: Lines) -> Outcome:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for sku, qty in lines:
                    updated = await conn.execute(
                        "UPDATE stock SET on_hand = on_hand - $2 WHERE sku = $1 AND on_hand >= $2",
                        sku,
                        qty,
                    )
                    if updated == "UPDATE 0":
                        raise _OutOfStock  # leaves the transaction: ROLLBACK
                await conn.execute("INSERT INTO orders (lines) VALUES ($1)", json.dumps(lines))
        except _OutOfStock:
            return Outcome.OUT_OF_STOCK
        return Outcome.PLACED

    async def report(self) -> StoreReport:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT sku, on_hand FROM stock")
            orders = await conn.fetchval("SELECT count(*) FROM orders")
        return StoreReport({r["sku"]: r["on_hand"] for r in rows}, orders)


class _OutOfStock(Exception):
    """A line found too little stock: roll the order back."""
