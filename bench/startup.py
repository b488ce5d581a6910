"""Start-up: how long an engine takes to rebuild a large store, on SQLite and PostgreSQL.

    ./dev bench startup [--products N] [--holds N] [--dsn DSN]
    ./dev bench startup history [--finished N,N,...] [--holds N] [--products N] [--dsn DSN]

Each run writes a store straight into a fresh database with bulk SQL (the current schema, with
a movements ledger that balances: ``stockade check`` passes on it), then times ``open_engine``
until it answers, and checks what it loaded.

The default run is the catalogue: ``products`` products and ``holds`` open holds (one line
each, spread over the products, expiring in an hour). The baseline beside it reads the same
tables into plain Python tuples over the same driver, the least any start-up from that
database must do.

``history`` is start-up against history size (design.md §11: start-up loads the open holds and
the orders inside the idempotency window, never the whole history): the same catalogue and
``holds`` open holds, beside ``finished`` orders sold two days ago, for each size listed. The
engine must load exactly the open holds whatever the history, and its start-up time stay flat:
the ratio is against the run with the smallest history, in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import trio

import stockade
from bench.contenders.postgres import POSTGRES_DSN, reset_schema, with_schema
from stockade.persistence.schema import MIGRATIONS, SCHEMA_VERSION, STATE_TABLE

SCHEMA = "stockade_bench"
#: When the history's orders were placed: well outside the default idempotency window.
HISTORY_AGE_S = 2 * 86400


def sku(n: int) -> str:
    return f"sku-{n:08d}"


class Fill:
    """The rows of a store of ``products`` products (100 on hand each), ``holds`` open holds of
    one unit (hold n on product n mod products) and ``finished`` orders that bought one unit
    (order n of product n mod products) ``HISTORY_AGE_S`` ago; and a movements ledger that adds
    up to them."""

    def __init__(self, products: int, holds: int, finished: int, now: float) -> None:
        self.products, self.holds, self.finished, self.now = products, holds, finished, now

    def _count(self, n: int, of: int) -> int:
        """How many of ``n`` round-robin items land on product ``of``."""
        return n // self.products + (1 if of < n % self.products else 0)

    def stock(self) -> Iterator[tuple[str, str, int, int]]:
        for n in range(self.products):
            yield (sku(n), "default", 100, self._count(self.holds, n))

    def orders(self) -> Iterator[tuple[Any, ...]]:
        for n in range(self.holds):
            s = sku(n % self.products)
            yield (f"h{n:031x}", "reserved", f'{{"{s}":1}}', self.now, self.now + 3600, None,
                   f'{{"{s}":{{"default":1}}}}', None, None)  # fmt: skip
        sold_at = self.now - HISTORY_AGE_S
        for n in range(self.finished):
            s = sku(n % self.products)
            yield (f"f{n:031x}", "confirmed", f'{{"{s}":1}}', sold_at, None, None,
                   f'{{"{s}":{{"default":1}}}}', None, None)  # fmt: skip

    def movements(self) -> Iterator[tuple[Any, ...]]:
        seq = 0
        for n in range(self.products):  # set: what is on hand now plus what was sold since
            seq += 1
            on_hand = 100 + self._count(self.finished, n)
            yield (seq, sku(n), "default", "set", None, on_hand, 0, None, self.now - 3 * 86400)
        for n in range(self.finished):
            seq += 1
            yield (seq, sku(n % self.products), "default", "placed", f"f{n:031x}", -1, 0, None,
                   self.now - HISTORY_AGE_S)  # fmt: skip
        for n in range(self.holds):
            seq += 1
            yield (seq, sku(n % self.products), "default", "placed", f"h{n:031x}", 0, 1, None,
                   self.now)  # fmt: skip

    @property
    def last_seq(self) -> int:
        return self.products + self.finished + self.holds


#: The order columns the fill writes; later ones (returns, customers...) keep their defaults.
_FILLED = (
    "id, status, lines, created_at, expires_at, idempotency_key, allocations, channel, location"
)
_STATE = "INSERT INTO stockade_state (id, schema_version, last_seq, owner_epoch) VALUES "
_SCHEMA = [STATE_TABLE, *(statement for step in MIGRATIONS for statement in step)]


def fill_sqlite(path: str, fill: Fill) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN")
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute(_STATE + "(1, ?, ?, 0)", (SCHEMA_VERSION, fill.last_seq))
    conn.executemany("INSERT INTO stock VALUES (?, ?, ?, ?)", fill.stock())
    conn.executemany(f"INSERT INTO orders ({_FILLED}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     fill.orders())  # fmt: skip
    conn.executemany("INSERT INTO movements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", fill.movements())
    conn.execute("COMMIT")
    conn.close()


async def fill_postgres(dsn: str, fill: Fill) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in _SCHEMA:
            await conn.execute(statement)
        await conn.execute(_STATE + "(1, $1, $2, 0)", SCHEMA_VERSION, fill.last_seq)
        await conn.copy_records_to_table("stock", records=fill.stock())
        columns = [c.strip() for c in _FILLED.split(",")]
        await conn.copy_records_to_table("orders", records=fill.orders(), columns=columns)
        await conn.copy_records_to_table("movements", records=fill.movements())
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def time_engine(url: str, fill: Fill) -> float:
    """Seconds until ``open_engine`` answers; checks it loaded the catalogue and only the open
    holds (never the history)."""

    async def main() -> float:
        start = time.perf_counter()
        async with stockade.open_engine(url) as engine:
            seconds = time.perf_counter() - start
            level = await engine.stock(sku(0))
            stats = engine.statistics()
            assert level.reserved == (1 if fill.holds else 0), level
            assert stats.products == fill.products, stats
            assert stats.scheduled_expiries == stats.orders == fill.holds, stats
        return seconds

    return trio.run(main)


def baseline_sqlite(path: str) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("SELECT sku, location, on_hand, reserved FROM stock").fetchall()
    conn.execute("SELECT * FROM orders").fetchall()
    conn.close()
    return time.perf_counter() - start


async def baseline_postgres(dsn: str) -> float:
    start = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    await conn.fetch("SELECT sku, location, on_hand, reserved FROM stock")
    await conn.fetch("SELECT * FROM orders")
    await conn.close()
    return time.perf_counter() - start


def run_sqlite(fill: Fill, baseline: bool) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "startup.db")
        fill_sqlite(path, fill)
        base = baseline_sqlite(path) if baseline else 0.0
        return time_engine(f"sqlite:///{path}", fill), base


def run_postgres(dsn: str, fill: Fill, baseline: bool) -> tuple[float, float] | None:
    """None (and why, printed) when there is no PostgreSQL to run on."""
    try:
        asyncio.run(reset_schema(dsn, SCHEMA))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL at {dsn} skipped: {exc!r}")
        return None
    url = with_schema(dsn, SCHEMA)
    try:
        asyncio.run(fill_postgres(url, fill))
        base = asyncio.run(baseline_postgres(url)) if baseline else 0.0
        return time_engine(url, fill), base
    finally:
        asyncio.run(reset_schema(dsn, SCHEMA, create=False))


def catalogue(products: int, holds: int, dsn: str) -> None:
    fill = Fill(products, holds, 0, time.time())
    rows = [("SQLite", *run_sqlite(fill, baseline=True))]
    measured = run_postgres(dsn, fill, baseline=True)
    if measured is not None:
        rows.append(("PostgreSQL", *measured))
    print(f"start-up with {products:,} products and {holds:,} open holds")
    print(f"{'store':<12}{'engine s':>10}{'read-only baseline s':>22}{'ratio':>8}")
    for name, engine_s, base_s in rows:
        print(f"{name:<12}{engine_s:>10.2f}{base_s:>22.2f}{engine_s / base_s:>8.1f}")


def history(finished: list[int], holds: int, products: int, dsn: str) -> None:
    sizes = sorted(finished)
    print(f"start-up against history: {products:,} products, {holds:,} open holds, "
          f"finished orders {', '.join(f'{n:,}' for n in sizes)}")  # fmt: skip
    print(f"{'store':<12}{'finished orders':>16}{'open holds':>12}{'engine s':>10}"
          f"{'ratio to the smallest':>23}")  # fmt: skip
    for name in ("SQLite", "PostgreSQL"):
        first = None
        for size in sizes:
            fill = Fill(products, holds, size, time.time())
            if name == "SQLite":
                seconds = run_sqlite(fill, baseline=False)[0]
            else:
                measured = run_postgres(dsn, fill, baseline=False)
                if measured is None:
                    break
                seconds = measured[0]
            first = seconds if first is None else first
            print(f"{name:<12}{size:>16,}{holds:>12,}{seconds:>10.2f}{seconds / first:>23.2f}")


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a list of counts like 0,1000000, not {value!r}"
        ) from None
    if not sizes or min(sizes) < 0:
        raise argparse.ArgumentTypeError("counts must be 0 or more")
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=POSTGRES_DSN)
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--holds", type=int, default=100_000)
    modes = parser.add_subparsers(dest="mode")
    past = modes.add_parser("history", help="start-up against history size")
    past.add_argument("--finished", type=_sizes, default=[0, 1_000_000],
                      help="finished orders, one run per count (default 0,1000000)")  # fmt: skip
    past.add_argument("--holds", type=int, default=10_000, dest="history_holds")
    past.add_argument("--products", type=int, default=10_000, dest="history_products")
    args = parser.parse_args(argv)
    if args.mode == "history":
        history(args.finished, args.history_holds, args.history_products, args.dsn)
    else:
        catalogue(args.products, args.holds, args.dsn)


if __name__ == "__main__":
    main()
