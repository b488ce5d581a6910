"""Durable throughput: stockade against the row-lock approach, on PostgreSQL and SQLite.

    ./dev bench durable [--orders N] [--baseline-orders N] [--callers N] [--dsn DSN]
                        [--feed on|off|off,on] [--webhook]
                        [--sink webhook|nats|redis|amqp] [--batch N]

Every contender sells out a hot product with ``callers`` concurrent callers placing
single-line direct purchases, each acknowledged only once durable:

* stockade on PostgreSQL and on SQLite, durable mode (group commit);
* the usual approach on PostgreSQL: one transaction per order, ``UPDATE stock SET on_hand =
  on_hand - 1 WHERE sku = $1 AND on_hand >= 1`` plus the order ``INSERT``, through an asyncpg
  pool, from the same number of asyncio tasks;
* the same on SQLite (one writer at a time is all SQLite allows: one connection, in a loop).

``--feed`` runs stockade with the change feed on (the default), off, or both (``off,on``: the
ratio of on to off is printed); ``--sink`` feeds every event of the runs with the feed on to
one consumer (bench/feedload.py): a webhook (``--batch N`` events per POST; ``--webhook`` is
``--sink webhook``) delivered to a receiver in a process of its own, or a sink publishing to
NATS, Redis or RabbitMQ; it runs the feed off too (unless ``--feed`` says otherwise), so the
ratio of orders/s with the consumer to without is printed, with the feed lag p99 (events not
yet acknowledged, sampled while orders run) and the delivery lag p99 (from an event's change
to its arrival, or its broker's acknowledgement).

Printed per contender: orders/s, rows written per transaction, p50/p99 acknowledgement latency,
and the ratio to its database's baseline. Afterwards each is verified against its own database:
units gone == orders acknowledged == order rows, stock never below zero. Tables live in
``stockade_bench*`` schemas (PostgreSQL, dropped first) and a temporary directory (SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time

import asyncpg
import trio

import stockade
from bench.contenders.postgres import POSTGRES_DSN, reset_schema, with_schema
from bench.feedload import CONSUMERS, FeedFigures, watching
from stockade._open import EngineOptions, open_engine_and_store


class Result:
    def __init__(self, name: str, orders: int, seconds: float, latencies: list[float]) -> None:
        self.name = name
        self.orders = orders
        self.rate = orders / seconds
        latencies.sort()
        self.p50_ms = statistics.median(latencies) * 1000
        self.p99_ms = latencies[int(len(latencies) * 0.99) - 1] * 1000
        self.rows_per_tx = 0.0
        self.feed: FeedFigures | None = None


# -- stockade ---------------------------------------------------------------------------------


def run_stockade(
    name: str, url: str, units: int, callers: int, *, feed: bool = True,
    consumer: str | None = None, batch: int = 1,
) -> Result:  # fmt: skip
    async def main() -> Result:
        options = EngineOptions(journal_size=1_000_000, feed=feed)
        async with open_engine_and_store(url, options=options) as (engine, store):
            if consumer is not None:
                async with watching(engine, store, consumer, batch) as watch:
                    first_seq = engine.feed_head or 0
                    result = await sell_out(engine, units, callers, name)
                    watch.orders_done()
                    result.feed = await watch.drain(first_seq)
                return result
            return await sell_out(engine, units, callers, name)

    return trio.run(main)


def run_isolated(
    name: str, url: str, units: int, callers: int, *, feed: bool = True,
    consumer: str | None = None, batch: int = 1,
) -> Result:  # fmt: skip
    """:func:`run_stockade` in a process of its own. Runs one after another in one process
    slow down (measured here: the second of two identical runs 15-20% slower), which would
    make whichever setting runs second look worse in a comparison."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: Result = pool.apply(
            run_stockade,
            (name, url, units, callers),
            {"feed": feed, "consumer": consumer, "batch": batch},
        )
    return result


async def sell_out(engine: stockade.Engine, units: int, callers: int, name: str) -> Result:
    """``callers`` buyers take the ``units`` of one product one by one until none is left."""
    await engine.set_stock("hot", units)
    before = engine.statistics()
    latencies: list[float] = []

    async def buyer() -> None:
        while True:
            start = time.perf_counter()
            try:
                await engine.place_order({"hot": 1})
            except stockade.OutOfStock:
                return
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(buyer)
    result = Result(name, len(latencies), time.perf_counter() - start, latencies)
    after = engine.statistics()
    batches = after.journal.batches - before.journal.batches
    # per order: a movement row and an order row; per batch: the product row and state
    result.rows_per_tx = (2 * result.orders + 2 * batches) / max(batches, 1)
    return result


async def verify_stockade_postgres(dsn: str, units: int, acknowledged: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        on_hand = await conn.fetchval("SELECT sum(on_hand) FROM stock WHERE sku = 'hot'")
        rows = await conn.fetchval("SELECT count(*) FROM orders")
    finally:
        await conn.close()
    check(units, on_hand, rows, acknowledged)


def verify_stockade_sqlite(path: str, units: int, acknowledged: int) -> None:
    conn = sqlite3.connect(path)
    try:
        (on_hand,) = conn.execute("SELECT sum(on_hand) FROM stock WHERE sku = 'hot'").fetchone()
        (rows,) = conn.execute("SELECT count(*) FROM orders").fetchone()
    finally:
        conn.close()
    check(units, on_hand, rows, acknowledged)


def check(units: int, on_hand: int, rows: int, acknowledged: int) -> None:
    if on_hand < 0 or units - on_hand != acknowledged or rows != acknowledged:
        raise AssertionError(
            f"FAILED verification: units gone {units - on_hand}, orders acknowledged "
            f"{acknowledged}, order rows {rows}, on_hand {on_hand}"
        )


# -- baselines --------------------------------------------------------------------------------

BASELINE_TABLES = [
    "CREATE TABLE stock (sku TEXT PRIMARY KEY, on_hand BIGINT NOT NULL)",
    "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, sku TEXT NOT NULL, qty INT NOT NULL)",
]


async def run_postgres_baseline(dsn: str, units: int, callers: int) -> Result:
    conn = await asyncpg.connect(dsn)
    for statement in BASELINE_TABLES:
        await conn.execute(statement)
    await conn.execute("INSERT INTO stock VALUES ('hot', $1)", units)
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=50, max_size=50)
    latencies: list[float] = []

    async def buyer() -> None:
        while True:
            start = time.perf_counter()
            async with pool.acquire() as c, c.transaction():
                updated = await c.execute(
                    "UPDATE stock SET on_hand = on_hand - 1 WHERE sku = 'hot' AND on_hand >= 1"
                )
                if updated == "UPDATE 0":
                    return
                await c.execute("INSERT INTO orders (sku, qty) VALUES ('hot', 1)")
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(buyer() for _ in range(callers)))
    result = Result("row lock, PostgreSQL", len(latencies), time.perf_counter() - start, latencies)
    result.rows_per_tx = 2
    async with pool.acquire() as c:
        on_hand = await c.fetchval("SELECT on_hand FROM stock")
        rows = await c.fetchval("SELECT count(*) FROM orders")
    await pool.close()
    check(units, on_hand, rows, result.orders)
    return result


def run_sqlite_baseline(path: str, units: int) -> Result:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, on_hand INTEGER NOT NULL)")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT, qty INTEGER)")
    conn.execute("INSERT INTO stock VALUES ('hot', ?)", (units,))
    latencies: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "UPDATE stock SET on_hand = on_hand - 1 WHERE sku = 'hot' AND on_hand >= 1"
        )
        if cur.rowcount == 0:
            conn.execute("ROLLBACK")
            break
        conn.execute("INSERT INTO orders (sku, qty) VALUES ('hot', 1)")
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - t)
    result = Result("row lock, SQLite", len(latencies), time.perf_counter() - start, latencies)
    result.rows_per_tx = 2
    (on_hand,) = conn.execute("SELECT on_hand FROM stock").fetchone()
    (rows,) = conn.execute("SELECT count(*) FROM orders").fetchone()
    conn.close()
    check(units, on_hand, rows, result.orders)
    return result


# -- the run ----------------------------------------------------------------------------------


def main(
    dsn: str, orders: int, baseline_orders: int, callers: int,
    feeds: tuple[bool, ...] = (True,), consumer: str | None = None, batch: int = 1,
) -> None:  # fmt: skip
    results: list[tuple[Result, Result | None]] = []
    by_feed: dict[tuple[str, bool], Result] = {}
    # comparing settings: each run from a fresh process (see run_isolated)
    run = run_stockade if feeds == (True,) and consumer is None else run_isolated
    fed = consumer if consumer != "webhook" or batch == 1 else f"webhook/{batch}"

    def label(database: str, feed: bool) -> str:
        if feeds == (True,) and consumer is None:
            return f"stockade, {database}"  # as before the feed options
        return f"stockade, {database}, feed " + (f"on + {fed}" if feed and consumer else
                                                 "on" if feed else "off")  # fmt: skip

    try:
        asyncio.run(reset_schema(dsn, "stockade_bench"))
        asyncio.run(reset_schema(dsn, "stockade_bench_baseline"))
        postgres = True
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL at {dsn} skipped: {exc!r}")
        postgres = False
    if postgres:
        baseline = asyncio.run(
            run_postgres_baseline(
                with_schema(dsn, "stockade_bench_baseline"), baseline_orders, callers
            )
        )
        results.append((baseline, None))
        url = with_schema(dsn, "stockade_bench")
        for feed in feeds:
            asyncio.run(reset_schema(dsn, "stockade_bench"))  # each run from an empty store
            ours = run(label("PostgreSQL", feed), url, orders, callers, feed=feed,
                       consumer=consumer if feed else None, batch=batch)  # fmt: skip
            asyncio.run(verify_stockade_postgres(url, orders, ours.orders))
            results.append((ours, baseline))
            by_feed["PostgreSQL", feed] = ours
    with tempfile.TemporaryDirectory() as tmp:
        baseline = run_sqlite_baseline(os.path.join(tmp, "baseline.db"), baseline_orders)
        results.append((baseline, None))
        for feed in feeds:
            path = os.path.join(tmp, f"stockade-{'on' if feed else 'off'}.db")
            ours = run(label("SQLite", feed), f"sqlite:///{path}", orders, callers,
                       feed=feed, consumer=consumer if feed else None, batch=batch)  # fmt: skip
            verify_stockade_sqlite(path, orders, ours.orders)
            results.append((ours, baseline))
            by_feed["SQLite", feed] = ours

    print(f"durable single-line orders on one hot product, {callers} concurrent callers")
    print(f"{'contender':<40}{'orders':>8}{'orders/s':>11}{'rows/tx':>9}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'ratio':>8}  verified")  # fmt: skip
    for result, base in results:
        ratio = f"{result.rate / base.rate:.1f}x" if base else "1.0x"
        print(f"{result.name:<40}{result.orders:>8}{result.rate:>11,.0f}{result.rows_per_tx:>9.1f}"
              f"{result.p50_ms:>9.1f}{result.p99_ms:>9.1f}{ratio:>8}  yes")  # fmt: skip
    print_feed(by_feed)
    if postgres:
        asyncio.run(reset_schema(dsn, "stockade_bench", create=False))
        asyncio.run(reset_schema(dsn, "stockade_bench_baseline", create=False))


def print_feed(by_feed: dict[tuple[str, bool], Result]) -> None:
    """The feed's cost (on against off, the target is 0.85 or more) and the consumer's lags."""
    for database in ("PostgreSQL", "SQLite"):
        on, off = by_feed.get((database, True)), by_feed.get((database, False))
        if on is not None and off is not None:
            print(f"{database}: feed on / feed off = {on.rate / off.rate:.2f}x (target >= 0.85)")
    watched = [r for r in by_feed.values() if r.feed is not None]
    if not watched:
        return
    print(f"{'consumer of':<40}{'feed lag p99':>13}{'delivery p50 ms':>16}{'p99 ms':>12}"
          f"{'delivered':>16}{'caught up s':>13}")  # fmt: skip
    for result in watched:
        f = result.feed
        assert f is not None
        print(
            f"{result.name:<40}{f.feed_lag_p99:>13}{f.delivery_p50_ms:>16.1f}"
            f"{f.delivery_p99_ms:>12.1f}{f'{f.delivered}/{f.events}':>16}{f.catch_up_s:>13.1f}"
        )


def _feeds(value: str) -> tuple[bool, ...]:
    words = value.split(",")
    if not words or any(w not in ("on", "off") for w in words) or len(set(words)) != len(words):
        raise argparse.ArgumentTypeError(f"use on, off or off,on, not {value!r}")
    return tuple(w == "on" for w in words)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=60_000)
    parser.add_argument("--baseline-orders", type=int, default=5_000)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--dsn", default=POSTGRES_DSN)
    parser.add_argument(
        "--feed",
        type=_feeds,
        default=(True,),
        metavar="on|off|off,on",
        help="the change feed on, off, or both in one run (default: on)",
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="one webhook subscribed to every event while the feed is on (--sink webhook)",
    )
    parser.add_argument(
        "--sink",
        choices=CONSUMERS,
        help="one consumer of every event while the feed is on; runs the feed off beside it",
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="events per webhook POST (1 to 1000; default 1)"
    )
    args = parser.parse_args()
    consumer = "webhook" if args.webhook else args.sink
    feeds = args.feed
    if consumer is not None and "--feed" not in " ".join(sys.argv):
        feeds = (False, True)  # the consumer's cost: beside the feed off, in the same run
    main(args.dsn, args.orders, args.baseline_orders, args.callers, feeds, consumer, args.batch)
