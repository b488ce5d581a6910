"""stockade embedded: the engine in the bench's own process, in memory, on SQLite, on PostgreSQL.

The durable ones acknowledge an order only once the batch holding it has committed (group
commit); the memory one answers at once. Each run opens a fresh engine on a fresh database,
and the report reads that database directly (SQL), not the engine.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg

import stockade
from bench.contenders.base import Contender, Market, Outcome, Place, StoreReport
from bench.contenders.postgres import PostgresContender, in_asyncio, reset_schema, with_schema
from bench.workloads import Lines

__all__ = ["StockadeMemory", "StockadePostgres", "StockadeSQLite", "read_sqlite"]


class EngineMarket(Market):
    def __init__(self, engine: stockade.Engine, skus: list[str]) -> None:
        self.engine = engine
        self.skus = skus

    async def caller(self) -> Place:
        return self.place

    async def place(self, lines: Lines) -> Outcome:
        try:
            await self.engine.place_order(dict(lines))
        except stockade.OutOfStock:
            return Outcome.OUT_OF_STOCK
        except stockade.Overloaded:
            return Outcome.OVERLOADED
        return Outcome.PLACED

    async def report(self) -> StoreReport:
        # memory: the engine is the store; ask each product's actor
        levels = [await self.engine.stock(sku) for sku in self.skus]
        return StoreReport(
            {level.sku: level.on_hand for level in levels},
            self.engine.statistics().orders,
            {level.sku: level.reserved for level in levels},
        )


async def stock_engine(engine: stockade.Engine, stock: dict[str, int]) -> None:
    """Set every product's stock at once, so durable stores commit them in a few batches."""
    async with anyio.create_task_group() as tg:
        for sku, units in stock.items():
            tg.start_soon(engine.set_stock, sku, units)


class StockadeMemory(Contender):
    name = "stockade-memory"
    description = "stockade embedded, in memory (nothing persisted)"
    backend = "trio"

    @asynccontextmanager
    async def market(self, run: str, stock: dict[str, int]) -> AsyncIterator[Market]:
        async with stockade.open_engine(None) as engine:
            await stock_engine(engine, stock)
            yield EngineMarket(engine, list(stock))


def read_sqlite(path: Path, prefix: str = "") -> StoreReport:
    """Products whose sku starts with ``prefix`` and the number of confirmed orders, read from
    a stockade SQLite file (blocking)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT sku, on_hand, reserved FROM products WHERE substr(sku, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchall()
        (orders,) = conn.execute(
            "SELECT count(*) FROM orders WHERE status = 'confirmed'"
        ).fetchone()
    finally:
        conn.close()
    return StoreReport({r[0]: r[1] for r in rows}, orders, {r[0]: r[2] for r in rows})


class SQLiteMarket(EngineMarket):
    def __init__(self, engine: stockade.Engine, skus: list[str], path: Path) -> None:
        super().__init__(engine, skus)
        self.path = path

    async def report(self) -> StoreReport:
        # durable: every acknowledged order is committed, so the file already holds it
        return await anyio.to_thread.run_sync(read_sqlite, self.path)


class StockadeSQLite(Contender):
    name = "stockade-sqlite"
    description = "stockade embedded, durable on SQLite (group commit, fsync per batch)"
    backend = "trio"

    @asynccontextmanager
    async def market(self, run: str, stock: dict[str, int]) -> AsyncIterator[Market]:
        with tempfile.TemporaryDirectory(prefix="stockade-bench-") as tmp:
            path = Path(tmp) / "stock.db"
            async with stockade.open_engine(f"sqlite:///{path}") as engine:
                await stock_engine(engine, stock)
                yield SQLiteMarket(engine, list(stock), path)


class PostgresMarket(EngineMarket):
    def __init__(self, engine: stockade.Engine, skus: list[str], dsn: str) -> None:
        super().__init__(engine, skus)
        self.dsn = dsn

    async def report(self) -> StoreReport:
        async def read() -> StoreReport:
            conn = await asyncpg.connect(self.dsn)
            try:
                rows = await conn.fetch("SELECT sku, on_hand, reserved FROM products")
                orders = await conn.fetchval(
                    "SELECT count(*) FROM orders WHERE status = 'confirmed'"
                )
            finally:
                await conn.close()
            return StoreReport(
                {r["sku"]: r["on_hand"] for r in rows},
                orders,
                {r["sku"]: r["reserved"] for r in rows},
            )

        return await in_asyncio(read)


class StockadePostgres(PostgresContender):
    name = "stockade-postgres"
    description = "stockade embedded, durable on PostgreSQL (group commit through asyncpg)"
    backend = "trio"
    schema = "stockade_bench_engine"

    @asynccontextmanager
    async def market(self, run: str, stock: dict[str, int]) -> AsyncIterator[Market]:
        await in_asyncio(lambda: reset_schema(self.dsn, self.schema))
        dsn = with_schema(self.dsn, self.schema)
        async with stockade.open_engine(dsn) as engine:
            await stock_engine(engine, stock)
            yield PostgresMarket(engine, list(stock), dsn)
