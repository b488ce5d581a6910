"""HTTP orders through ``serve --workers N`` beside ``--workers 1``, in the same run, with wrk.

    ./dev bench http --workers N [--connections C] [--seconds S] [--stores sqlite,postgres]
                                 [--quick]

For each store (durable SQLite in a temporary directory; PostgreSQL in a fresh schema, skipped
with a reason when none answers at ``STOCKADE_BENCH_POSTGRES_DSN``) and each workload (``hot``:
every order takes one unit of one product; ``1k``: of one of 1,000 products, at random), the
server runs once with ``--workers 1`` (today's single process) and once with ``--workers N``,
one after the other, each under ``wrk -t1 -cC -dS`` of direct purchases. Prints orders/s, p50
and p99, the ratio against ``--workers 1`` of the same store and workload, and each process's
CPU share over the run (CPU seconds from ``/proc/PID/stat`` utime + stime, before and after,
divided by the wall time: 1.00 = one core busy): the server, or the supervisor, the engine and
each front, and wrk itself, which shares the machine. That shows what limits each run.

Every run is verified: units sold (from the products' levels) equal the orders the engine
placed (``stockade_orders_placed_total`` in /metrics), wrk read all but at most one 201 per
connection, and nothing else was answered. ``--quick`` is a smoke run (1 s, 8 connections,
20 products for ``1k``).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.contenders.postgres import POSTGRES_DSN, postgres_unavailable, reset_schema, with_schema
from bench.http import ORDER, TOKEN, call, placed_orders, wrk
from bench.server import Server

__all__ = ["Run", "cpu_seconds", "main", "processes"]

UNITS = 10**9
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Each request picks one of the workload's products at random (wrk's Lua, per request).
MANY = """
local products = {products}
request = function()
  local body = '{{"lines": [{{"sku": "p' .. math.random(0, products - 1) .. '", "qty": 1}}]}}'
  return wrk.format(nil, nil, nil, body)
end
"""


@dataclass
class Run:
    store: str
    workload: str
    workers: int
    rate: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    #: process name -> CPU share over the run (1.0 = one core)
    cpu: dict[str, float] = field(default_factory=dict)
    verified: bool = False
    detail: str = ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def processes(server: Server, workers: int) -> dict[str, int]:
    """The server's processes by name: ``server`` alone, or the supervisor, the engine and
    each front as the supervisor's log names them (the latest pid of each)."""
    assert server.process is not None
    if workers == 1:
        return {"server": server.process.pid}
    found = {"supervisor": server.process.pid}
    for line in server.log.read_text().splitlines():
        if '"child_started"' not in line:
            continue
        event = json.loads(line)
        name = "engine" if event["child"] == "engine" else f"front{event['worker']}"
        found[name] = event["pid"]
    return found


def skus(products: int) -> list[str]:
    return ["hot"] if products == 1 else [f"p{i}" for i in range(products)]


def levels(base: str, products: int) -> int:
    """Units on hand, summed over the workload's products."""
    total, after = 0, ""
    while True:
        query = f"?limit=1000&after={after}" if after else "?limit=1000"
        with urllib.request.urlopen(f"{base}/v1/products{query}", timeout=10) as response:
            page = json.loads(response.read())
        total += sum(int(item["on_hand"]) for item in page["items"])
        if not page["next_after"]:
            return total
        after = str(page["next_after"])


def settled(base: str, products: int) -> tuple[int, int]:
    """(units sold, orders placed) once the requests in flight at wrk's stop are done."""
    deadline = time.monotonic() + 10
    last = (products * UNITS - levels(base, products), placed_orders(base))
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = (products * UNITS - levels(base, products), placed_orders(base))
        if now == last:
            break
        last = now
    return last


def one_run(store: str, database: str, products: int, workers: int, connections: int,
            seconds: int, workdir: Path) -> Run:  # fmt: skip
    workload = "hot" if products == 1 else f"{products:,} products"
    run = Run(store, workload, workers)
    args = ("--workers", str(workers), "--database", database)
    server = Server(workdir, TOKEN, args=args, start_timeout_s=120)
    server.start()
    try:
        base = server.url
        for sku in skus(products):
            call(f"{base}/v1/products/{sku}", "PUT", {"on_hand": UNITS})
        script = ORDER if products == 1 else ORDER + MANY.format(products=products)
        named = processes(server, workers)
        before = {name: cpu_seconds(pid) for name, pid in named.items()}
        started = time.monotonic()
        result = wrk(f"{base}/v1/orders", script, connections, seconds, str(workdir))
        wall = time.monotonic() - started
        run.cpu = {name: (cpu_seconds(pid) - before[name]) / wall for name, pid in named.items()}
        run.cpu["wrk"] = result["cpu_s"] / wall
        sold, placed = settled(base, products)
    finally:
        server.stop()
    run.rate, run.p50_ms, run.p99_ms = result["rate"], result["p50_ms"], result["p99_ms"]
    acknowledged = int(result.get("status_201", 0))
    others = {k: v for k, v in result.items() if k.startswith("status_") and k != "status_201"}
    in_flight = placed - acknowledged
    run.verified = sold == placed and 0 <= in_flight <= connections and not others
    run.detail = (f"units sold {sold:,}, orders placed {placed:,} (201s read {acknowledged:,}, "
                  f"{in_flight} in flight at the stop), other answers {others}")  # fmt: skip
    return run


@contextmanager
def database(store: str, dsn: str) -> Iterator[tuple[str, Path]]:
    """A fresh store: (its URL, a working directory for the server)."""
    with tempfile.TemporaryDirectory(prefix="stockade-http-") as workdir:
        if store == "sqlite":
            yield f"sqlite:///{workdir}/stockade.db", Path(workdir)
            return
        schema = f"stockade_bench_http_{uuid.uuid4().hex[:8]}"
        asyncio.run(reset_schema(dsn, schema))
        try:
            yield with_schema(dsn, schema), Path(workdir)
        finally:
            asyncio.run(reset_schema(dsn, schema, create=False))


def main(workers: int, connections: int, seconds: int, stores: list[str], quick: bool,
         dsn: str = POSTGRES_DSN) -> int:  # fmt: skip
    if quick:
        connections, seconds = 8, 1
    runs: list[Run] = []
    skipped: dict[str, str] = {}
    for store in stores:
        why = postgres_unavailable(dsn) if store == "postgres" else None
        if why is not None:
            skipped[store] = why
            continue
        for products in (1, 20 if quick else 1_000):
            for count in sorted({1, workers}):
                with database(store, dsn) as (url, workdir):
                    runs.append(one_run(store, url, products, count, connections, seconds,
                                        workdir))  # fmt: skip
    report(runs, skipped, workers, connections, seconds)
    return 0 if runs and all(run.verified for run in runs) else 1


def report(runs: list[Run], skipped: dict[str, str], workers: int, connections: int,
           seconds: int) -> None:  # fmt: skip
    print(f"stockade HTTP bench: serve --workers {workers} beside --workers 1, durable, "
          f"wrk 1 thread, {connections} connections, {seconds}s per run, on "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'store':<10}{'workload':<15}{'workers':>8}{'orders/s':>10}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'ratio':>7}  CPU share (1.00 = one core)")  # fmt: skip
    single: dict[tuple[str, str], float] = {}
    for run in runs:
        if run.workers == 1:
            single[run.store, run.workload] = run.rate
        ratio = run.rate / single[run.store, run.workload]
        cpu = ", ".join(f"{name} {share:.2f}" for name, share in run.cpu.items())
        print(f"{run.store:<10}{run.workload:<15}{run.workers:>8}{run.rate:>10,.0f}"
              f"{run.p50_ms:>8.1f}{run.p99_ms:>8.1f}{ratio:>7.2f}  {cpu}")  # fmt: skip
    for store, why in skipped.items():
        print(f"{store}: skipped: {why}")
    for run in runs:
        verdict = "verified" if run.verified else "FAILED"
        print(f"{run.store}, {run.workload}, --workers {run.workers}: {run.detail}: {verdict}")
