"""The engine protocol: what the hop costs, and how many durable orders one engine takes.

    ./dev bench protocol [--quick] [--calls N] [--orders N] [--connections N] [--tasks N]
                         [--database URL | --no-postgres]

1. **The hop**: a ``stockade engine`` subprocess (in memory, so only the hop is measured) and
   one client making ``stock`` calls, one at a time (round trip p50/p99) and from 64 callers
   at once (pipelined, as a busy front's are): CPU µs per call on each side (the client's
   process time; the engine's from /proc).
2. **The engine's ceiling**: a load generator speaking the protocol directly (``--connections``
   links, ``--tasks`` callers each, so many calls are pipelined on each link) places single-line
   durable purchases of a hot product against a ``stockade engine`` subprocess, beside the
   embedded durable engine on the same kind of store with the same number of callers, in the
   same run: on SQLite (a temporary directory) and on PostgreSQL (STOCKADE_BENCH_POSTGRES_DSN,
   fresh ``stockade_bench_*`` schemas; skipped when none answers), or on ``--database``.
   Printed: orders/s each, the ratio (target >= 0.6), and each process's CPU share, which says
   what limits the remote run (the engine, or this one-process load generator).

Verified after each run: units sold == orders acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

import stockade
from bench.contenders.postgres import (
    POSTGRES_DSN,
    postgres_unavailable,
    reset_schema,
    with_schema,
)

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class Engine:
    """A ``stockade engine`` subprocess on a Unix socket, stopped by its pid."""

    def __init__(self, directory: str, database: str) -> None:
        self.socket = f"{directory}/engine-{time.monotonic_ns()}.sock"
        self.log = open(f"{directory}/engine.log", "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stockade", "engine", "--database", database,
             "--listen", f"unix:{self.socket}"],
            stdout=self.log, stderr=self.log,
        )  # fmt: skip

    async def wait(self) -> str:
        deadline = time.monotonic() + 30
        while not await trio.Path(self.socket).exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the engine did not start: see engine.log")
            await trio.sleep(0.05)
        return f"unix:{self.socket}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


async def hop(directory: str, calls: int) -> None:
    engine = Engine(directory, "memory://")
    try:
        url = await engine.wait()
        async with stockade.open_remote_engine(url) as remote:
            await remote.set_stock("sku-1", 10)
            for _ in range(min(calls, 1000)):  # warm up
                await remote.stock("sku-1")
            latencies: list[float] = []
            serial = await _cpu_per_call(engine, remote, calls, 1, latencies)
            pipelined = await _cpu_per_call(engine, remote, calls, 64, None)
    finally:
        engine.stop()
    latencies.sort()
    p50 = statistics.median(latencies) * 1e6
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e6
    print(f"the hop ({calls} stock calls over a Unix socket):")
    print(
        f"  one at a time: round trip p50 {p50:,.0f} µs, p99 {p99:,.0f} µs;"
        f" CPU per call: client {serial[0]:,.0f} µs, engine {serial[1]:,.0f} µs"
    )
    print(
        f"  64 callers, pipelined: {pipelined[2]:,.0f} calls/s;"
        f" CPU per call: client {pipelined[0]:,.0f} µs, engine {pipelined[1]:,.0f} µs"
    )


async def _cpu_per_call(
    engine: Engine,
    remote: stockade.RemoteEngine,
    calls: int,
    callers: int,
    latencies: list[float] | None,
) -> tuple[float, float, float]:
    """``calls`` stock calls from ``callers`` tasks: µs of CPU per call in this process and
    in the engine's, and calls/s. Notes each call's round trip in ``latencies``."""
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            await remote.stock("sku-1")
            if latencies is not None:
                latencies.append(time.perf_counter() - started)

    client_0, engine_0 = time.process_time(), _cpu_s(engine.process.pid)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_0
    engine_cpu = _cpu_s(engine.process.pid) - engine_0
    return client_cpu / calls * 1e6, engine_cpu / calls * 1e6, calls / seconds


async def _rush(engine: stockade.Engine | stockade.RemoteEngine, orders: int, tasks: int) -> int:
    """``tasks`` callers buy one unit each until ``orders`` are sold; the orders acknowledged."""
    sold = 0

    async def caller() -> None:
        nonlocal sold
        while True:
            try:
                await engine.place_order({"hot": 1})
            except stockade.OutOfStock:
                return
            sold += 1

    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(caller)
    return sold


async def remote_ceiling(database: str, orders: int, connections: int, tasks: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        engine = Engine(directory, database)
        try:
            url = await engine.wait()
            async with stockade.open_remote_engine(url) as first:
                await first.set_stock("hot", orders)
            remotes = []
            async with trio.open_nursery() as nursery:
                for _ in range(connections):
                    remotes.append(await nursery.start(_hold_link, url))
                client_0, engine_0 = time.process_time(), _cpu_s(engine.process.pid)
                started = time.perf_counter()
                counts = [0] * connections

                async def drive(n: int) -> None:
                    counts[n] = await _rush(remotes[n], orders, tasks)

                async with trio.open_nursery() as rush:
                    for n in range(connections):
                        rush.start_soon(drive, n)
                seconds = time.perf_counter() - started
                client_cpu = time.process_time() - client_0
                engine_cpu = _cpu_s(engine.process.pid) - engine_0
                level = await remotes[0].stock("hot")
                journal = (await remotes[0].statistics()).journal
                nursery.cancel_scope.cancel()
        finally:
            engine.stop()
    sold = sum(counts)
    assert sold == orders - level.on_hand == orders, (sold, level)
    rate = sold / seconds
    print(f"  remote engine ({connections} links x {tasks} callers): {rate:,.0f} orders/s;"
          f" CPU share: engine {engine_cpu / seconds:.0%}, load generator"
          f" {client_cpu / seconds:.0%}  (verified: {sold} sold, {sold} acknowledged)")  # fmt: skip
    print(f"    {_journal(journal)}")
    return rate


def _journal(journal: stockade.JournalStatistics) -> str:
    batches = max(journal.batches, 1)
    return (f"journal: {journal.batches:,} commits of {journal.events_committed / batches:,.1f}"
            f" events, {journal.commit_ms_total / batches:,.1f} ms each")  # fmt: skip


async def _hold_link(url: str, task_status: trio.TaskStatus[stockade.RemoteEngine]) -> None:
    async with stockade.open_remote_engine(url) as remote:
        task_status.started(remote)
        await trio.sleep_forever()


async def embedded_ceiling(database: str, orders: int, callers: int) -> float:
    async with stockade.open_engine(database, durability="durable") as engine:
        await engine.set_stock("hot", orders)
        started = time.perf_counter()
        sold = await _rush(engine, orders, callers)
        seconds = time.perf_counter() - started
        level = await engine.stock("hot")
        journal = engine.statistics().journal
    assert sold == orders - level.on_hand == orders, (sold, level)
    rate = sold / seconds
    print(f"  embedded engine ({callers} callers): {rate:,.0f} orders/s"
          f"  (verified: {sold} sold, {sold} acknowledged)")  # fmt: skip
    print(f"    {_journal(journal)}")
    return rate


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        await hop(directory, args.calls)
        stores = await _stores(args, directory)
        rows = []
        for name, remote_database, embedded_database in stores:
            print(f"\nthe engine's ceiling on {name}: {args.orders:,} durable single-line"
                  " purchases of one hot product")  # fmt: skip
            remote = await remote_ceiling(
                remote_database, args.orders, args.connections, args.tasks
            )
            embedded = await embedded_ceiling(
                embedded_database, args.orders, args.connections * args.tasks
            )
            rows.append((name, remote, embedded))
        if any(name == "PostgreSQL" for name, _, _ in stores):
            await _reset_postgres(create=False)
    print(f"\n{'store':<12}{'remote orders/s':>17}{'embedded orders/s':>19}{'ratio':>8}")
    for name, remote, embedded in rows:
        print(f"{name:<12}{remote:>17,.0f}{embedded:>19,.0f}{remote / embedded:>8.2f}"
              "  (target >= 0.6)")  # fmt: skip


_SCHEMAS = ("stockade_bench_remote", "stockade_bench_embedded")


async def _stores(args: argparse.Namespace, directory: str) -> list[tuple[str, str, str]]:
    """``(name, database for the remote engine, database for the embedded one)`` per store:
    ``--database`` alone, else SQLite and (when one answers) PostgreSQL."""
    if args.database:
        return [(args.database.split(":")[0], args.database, args.database)]
    stores = [("SQLite", f"sqlite:///{directory}/remote.db", f"sqlite:///{directory}/embedded.db")]
    if args.no_postgres:
        return stores
    why = await trio.to_thread.run_sync(postgres_unavailable, POSTGRES_DSN)
    if why is not None:
        print(f"PostgreSQL skipped: {why}")
        return stores
    await _reset_postgres(create=True)
    remote, embedded = (with_schema(POSTGRES_DSN, schema) for schema in _SCHEMAS)
    return [*stores, ("PostgreSQL", remote, embedded)]


async def _reset_postgres(*, create: bool) -> None:
    for schema in _SCHEMAS:
        job = reset_schema(POSTGRES_DSN, schema, create=create)
        await trio.to_thread.run_sync(asyncio.run, job)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.protocol", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny counts")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=128, help="callers per connection")
    parser.add_argument(
        "--database", default=None, help="one store for both (default: SQLite and PostgreSQL)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.orders, args.connections, args.tasks = 200, 500, 2, 8
    return args


if __name__ == "__main__":
    trio.run(main, parse())
