"""The change feed's cost on the durable path, as work per order rather than orders/s.

    python -m bench.feedcost [--orders N] [--callers N] [--feed off,on] [--repeat N] [--dsn DSN]

Throughput on a shared machine moves with whatever else runs; the work an order costs does not.
Each run (a process of its own, settings alternating ``off, on, off, on, ...``) sells ``orders``
units of one hot product to ``callers`` durable callers on PostgreSQL (a fresh schema of its
own) and measures, from the first order to the last:

* CPU seconds of the stockade process, split into the trio thread and the store's (the asyncpg
  thread; SQLite: the worker threads) (``/proc/self/task/*/stat``), and of the PostgreSQL
  backend that commits the batches (``/proc/<pg_backend_pid>/stat``), each per order in µs;
* round trips per batch on the writer's connection (each asyncpg call counted by what it costs
  on the wire: a COPY two, an ``executemany`` of no rows none, any other call one, BEGIN and
  COMMIT included);
* WAL bytes per order (``pg_current_wal_lsn()`` before and after: everything PostgreSQL wrote
  for the run, index entries included) and the schema's size per order at the end.

``--dsn sqlite`` measures a SQLite file instead (no backend, no round trips, no WAL figure;
the files' size per order). The WAL is the whole server's, so another client writing at the
same time adds to it: compare medians of repeated runs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
import trio

from bench.contenders.postgres import POSTGRES_DSN, reset_schema, with_schema
from bench.durable import _feeds
from bench.protocol import _rush
from stockade._open import EngineOptions, open_engine_and_store

_TICK = os.sysconf("SC_CLK_TCK")
#: What each asyncpg call on the writer's connection costs in round trips.
_ROUND_TRIPS = {
    "execute": 1,
    "executemany": 1,
    "fetch": 1,
    "fetchrow": 1,
    "fetchval": 1,
    "copy_records_to_table": 2,  # COPY ... FROM STDIN, then the data
}


class Cost(msgspec.Struct):
    feed: bool
    orders: int
    seconds: float
    batches: int
    process_us: float
    trio_us: float
    store_us: float
    backend_us: float
    round_trips: float
    wal_bytes: float
    table_bytes: float


def _cpu(path: str) -> float:
    """utime + stime of a /proc stat file, in seconds."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _threads() -> dict[str, float]:
    """CPU seconds of this process's threads, by name (the trio thread is the main one)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        name = "trio" if int(tid) == os.getpid() else names.get(int(tid), "other")
        out[name] = out.get(name, 0.0) + _cpu(f"/proc/self/task/{tid}/stat")
    return out


class _Counter:
    """Counts the round trips of the asyncpg calls made on one connection."""

    def __init__(self) -> None:
        self.count = 0
        self.conn: Any = None

    def install(self) -> None:
        for name, trips in _ROUND_TRIPS.items():
            original = getattr(asyncpg.Connection, name)
            setattr(asyncpg.Connection, name, self._wrap(original, trips, name == "executemany"))

    def _wrap(self, original: Callable[..., Any], trips: int, many: bool) -> Any:
        counter = self

        async def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
            # an executemany of no rows sends nothing (measured: 20 µs, no backend CPU)
            if conn is counter.conn and not (many and not args[1]):
                counter.count += trips
            return await original(conn, *args, **kwargs)

        return counted


async def _wal_and_size(dsn: str, schema: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        wal = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        size = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
            "AND c.relkind = 'r'",
            schema,
        )
    finally:
        await conn.close()
    return int(wal), int(size)


def measure(dsn: str, orders: int, callers: int, feed: bool) -> Cost:
    """One run in this process: a fresh schema (or SQLite file), ``orders`` sold, its cost per
    order. ``dsn`` ``sqlite``: a SQLite file in a temporary directory."""
    if dsn == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            return trio.run(_measure, None, f"sqlite:///{tmp}/feedcost.db", tmp, orders, callers,
                            feed, None)  # fmt: skip
    schema = f"stockade_feedcost_{uuid.uuid4().hex[:8]}"
    asyncio.run(reset_schema(dsn, schema))
    url = with_schema(dsn, schema)
    counter = _Counter()
    counter.install()
    try:
        return trio.run(_measure, dsn, url, schema, orders, callers, feed, counter)
    finally:
        asyncio.run(reset_schema(dsn, schema, create=False))


async def _bytes(dsn: str | None, where: str) -> tuple[int, int]:
    """WAL position and the tables' size: PostgreSQL's, or the SQLite files' (no WAL figure:
    SQLite's WAL file is reused, the database file's growth is what was written)."""
    if dsn is not None:
        return await trio.to_thread.run_sync(asyncio.run, _wal_and_size(dsn, where))

    def size() -> int:
        return sum(os.path.getsize(os.path.join(where, name)) for name in os.listdir(where))

    return 0, await trio.to_thread.run_sync(size)


async def _measure(
    dsn: str | None, url: str, where: str, orders: int, callers: int, feed: bool,
    counter: _Counter | None,
) -> Cost:  # fmt: skip
    options = EngineOptions(journal_size=1_000_000, feed=feed)
    async with open_engine_and_store(url, options=options) as (engine, store):
        await engine.set_stock("hot", orders)
        backend = ""
        if counter is not None:
            counter.conn = store._conn  # type: ignore[attr-defined]  # the writer's connection
            backend = f"/proc/{counter.conn.get_server_pid()}/stat"
        wal0, _ = await _bytes(dsn, where)
        stats0 = engine.statistics().journal
        trips0 = counter.count if counter is not None else 0
        threads0, process0 = _threads(), _cpu("/proc/self/stat")
        backend0 = _cpu(backend) if backend else 0.0
        start = time.perf_counter()
        sold = await _rush(engine, orders, callers)
        seconds = time.perf_counter() - start
        threads1, process1 = _threads(), _cpu("/proc/self/stat")
        backend1 = _cpu(backend) if backend else 0.0
        trips = counter.count - trips0 if counter is not None else 0
        batches = engine.statistics().journal.batches - stats0.batches
    wal1, size = await _bytes(dsn, where)
    per = 1e6 / sold

    def threads(*names: str) -> float:
        """CPU of the threads named (none named: all but trio's) per order."""
        mine = (lambda k: k in names) if names else (lambda k: k != "trio")
        t0 = sum(v for k, v in threads0.items() if mine(k))
        t1 = sum(v for k, v in threads1.items() if mine(k))
        return (t1 - t0) * per

    return Cost(
        feed=feed,
        orders=sold,
        seconds=seconds,
        batches=batches,
        process_us=(process1 - process0) * per,
        trio_us=threads("trio"),
        store_us=threads("stockade-asyncpg") if dsn is not None else threads(),
        backend_us=(backend1 - backend0) * per,
        round_trips=trips / max(batches, 1),
        wal_bytes=(wal1 - wal0) / sold,
        table_bytes=size / sold,
    )


def main(dsn: str, orders: int, callers: int, feeds: tuple[bool, ...], repeat: int) -> None:
    costs: list[Cost] = []
    ctx = multiprocessing.get_context("spawn")
    for _ in range(repeat):
        for feed in feeds:
            with ctx.Pool(1) as pool:
                cost: Cost = pool.apply(measure, (dsn, orders, callers, feed))
            costs.append(cost)
            print(_row(cost), flush=True)
    print("medians:")
    for feed in feeds:
        mine = [c for c in costs if c.feed == feed]
        fields = {
            name: statistics.median(getattr(c, name) for c in mine)
            for name in Cost.__struct_fields__
            if name != "feed"
        }
        print(_row(Cost(feed=feed, **fields)))


def _row(c: Cost) -> str:
    stockade_pg = c.process_us + c.backend_us
    return (
        f"feed {'on ' if c.feed else 'off'} orders {c.orders:.0f} in {c.seconds:5.1f}s "
        f"({c.orders / c.seconds:6,.0f}/s) batches {c.batches:5.0f} | µs/order: process "
        f"{c.process_us:5.1f} (trio {c.trio_us:5.1f}, store {c.store_us:4.1f}) backend "
        f"{c.backend_us:5.1f} total {stockade_pg:5.1f} | round trips/batch {c.round_trips:4.1f} "
        f"| WAL B/order {c.wal_bytes:5.0f} | table B/order {c.table_bytes:5.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=30_000)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--feed", type=_feeds, default=(False, True), metavar="off,on")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default=POSTGRES_DSN, help="a PostgreSQL DSN, or sqlite")
    args = parser.parse_args()
    main(args.dsn, args.orders, args.callers, args.feed, args.repeat)
