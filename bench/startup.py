"""Start-up: how long an engine takes to rebuild a large store, on SQLite and PostgreSQL.

    ./dev bench startup [--products N] [--holds N] [--dsn DSN]

Writes ``products`` products and ``holds`` open holds (one line each, spread over the
products, expiring in an hour) straight into a fresh store with bulk SQL, then times
``open_engine`` until it answers, and checks a product's stock and the count of open holds. The
baseline beside it reads the same tables into plain Python tuples over the same driver, the
least any start-up from that database must do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator

import asyncpg
import trio

import stockade
from bench.contenders.postgres import POSTGRES_DSN, reset_schema, with_schema
from stockade.persistence.schema import MIGRATIONS, SCHEMA_VERSION, STATE_TABLE


def product_rows(products: int, holds: int) -> Iterator[tuple[str, int, int]]:
    for n in range(products):
        yield (f"sku-{n:08d}", 100, 1 if n < holds else 0)


def order_rows(holds: int, now: float) -> Iterator[tuple[str, str, str, float, float, None]]:
    for n in range(holds):
        yield (f"{n:032x}", "reserved", f'{{"sku-{n:08d}":1}}', now, now + 3600, None)


def fill_sqlite(path: str, products: int, holds: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for statement in [STATE_TABLE, *(sql for step in MIGRATIONS for sql in step)]:
        conn.execute(statement)
    conn.execute("INSERT INTO stockade_state VALUES (1, ?, 0, 0)", (SCHEMA_VERSION,))
    conn.executemany("INSERT INTO products VALUES (?, ?, ?)", product_rows(products, holds))
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", order_rows(holds, time.time()))
    conn.execute("COMMIT")
    conn.close()


async def fill_postgres(dsn: str, products: int, holds: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in [STATE_TABLE, *(sql for step in MIGRATIONS for sql in step)]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO stockade_state VALUES (1, $1, 0, 0)", SCHEMA_VERSION)
        await conn.copy_records_to_table("products", records=list(product_rows(products, holds)))
        await conn.copy_records_to_table("orders", records=list(order_rows(holds, time.time())))
    finally:
        await conn.close()


def time_engine(url: str, products: int, holds: int) -> float:
    async def main() -> float:
        start = time.perf_counter()
        async with stockade.open_engine(url) as engine:
            seconds = time.perf_counter() - start
            level = await engine.stock(f"sku-{0:08d}")
            stats = engine.statistics()
            assert level.reserved == (1 if holds else 0), level
            assert stats.products == products and stats.scheduled_expiries == holds, stats
        return seconds

    return trio.run(main)


def baseline_sqlite(path: str) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("SELECT sku, on_hand, reserved FROM products").fetchall()
    conn.execute("SELECT * FROM orders").fetchall()
    conn.close()
    return time.perf_counter() - start


async def baseline_postgres(dsn: str) -> float:
    start = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    await conn.fetch("SELECT sku, on_hand, reserved FROM products")
    await conn.fetch("SELECT * FROM orders")
    await conn.close()
    return time.perf_counter() - start


def main(products: int, holds: int, dsn: str) -> None:
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "startup.db")
        fill_sqlite(path, products, holds)
        base = baseline_sqlite(path)
        rows.append(("SQLite", time_engine(f"sqlite:///{path}", products, holds), base))
    try:
        asyncio.run(reset_schema(dsn, "stockade_bench"))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL at {dsn} skipped: {exc!r}")
    else:
        url = with_schema(dsn, "stockade_bench")
        asyncio.run(fill_postgres(url, products, holds))
        base = asyncio.run(baseline_postgres(url))
        rows.append(("PostgreSQL", time_engine(url, products, holds), base))
        asyncio.run(reset_schema(dsn, "stockade_bench", create=False))
    print(f"start-up with {products:,} products and {holds:,} open holds")
    print(f"{'store':<12}{'engine s':>10}{'read-only baseline s':>22}{'ratio':>8}")
    for name, engine_s, base_s in rows:
        print(f"{name:<12}{engine_s:>10.2f}{base_s:>22.2f}{engine_s / base_s:>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--holds", type=int, default=100_000)
    parser.add_argument("--dsn", default=POSTGRES_DSN)
    args = parser.parse_args()
    main(args.products, args.holds, args.dsn)
