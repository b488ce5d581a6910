"""HTTP throughput: POST /v1/orders against GET /healthz on the same server, with wrk.

    ./dev bench http [--connections N] [--seconds S] [--tracing]
    ./dev bench http --workers N [...]: serve --workers N beside --workers 1 (bench/workers.py)

Starts ``stockade serve`` (durable, SQLite in a temporary directory) on a free loopback port,
then runs wrk (Debian package ``wrk``: ``apt-get install wrk``) twice, one after the other:
GET /healthz (the baseline: the HTTP stack alone) and POST /v1/orders direct purchases of one
unit of one product, sent with the admin token (placing orders needs a key). Prints requests/s,
p50/p99 latency and the ratio, and verifies that units sold equal the orders the server placed
(its /metrics), that wrk read all but at most one 201 per connection (those in flight when it
stopped), and that nothing else was answered. Bounded: each run lasts ``seconds``; the server is
stopped at the end.

``--tracing`` runs the server with OpenTelemetry tracing on, exporting over OTLP/HTTP to a
local sink that accepts and drops the spans (bench/otlp_sink.py): run the bench with and
without it to measure what tracing costs (off, the order path makes no span at all).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.otlp_sink import OtlpSink
from bench.server import Server

TOKEN = "bench-token"
UNITS = 10**9

COUNT_STATUSES = """
-- Each wrk thread runs its own Lua state: count there, add up in done() via thread:get.
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) counts = {} end
response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
done = function(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = '"' .. status .. '":' .. n end
  io.write("STATUSES {" .. table.concat(parts, ",") .. "}\\n")
  io.write(string.format("P50 %f\\nP99 %f\\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000))
end
"""
ORDER = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n' \
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n' \
        'wrk.body = \'{"lines": [{"sku": "hot", "qty": 1}]}\'\n'  # fmt: skip


def call(url: str, method: str = "GET", body: object = None) -> dict[str, int]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as response:
        result: dict[str, int] = json.loads(response.read())
        return result


def placed_orders(base: str) -> int:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    found = re.search(r"^stockade_orders_placed_total (\S+)$", metrics, re.M)
    assert found is not None, "no stockade_orders_placed_total in /metrics"
    return int(float(found.group(1)))


def settled(base: str) -> tuple[dict[str, int], int]:
    """The product's level and the orders placed, once the server has finished the requests
    still in flight when wrk stopped (two reads in a row agree; at most 10 s)."""
    deadline = time.monotonic() + 10
    last = (call(f"{base}/v1/products/hot"), placed_orders(base))
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = (call(f"{base}/v1/products/hot"), placed_orders(base))
        if now == last:
            break
        last = now
    return last


def wrk(url: str, script: str, connections: int, seconds: int, workdir: str) -> dict[str, float]:
    path = os.path.join(workdir, "script.lua")
    with open(path, "w") as f:
        f.write(script + COUNT_STATUSES)
    with open(os.path.join(workdir, "wrk.out"), "w+") as output:
        process = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", path, url],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(process.pid, 0)  # and what CPU wrk itself used
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        out = output.read()
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, process.args, out)
    statuses = json.loads(re.search(r"STATUSES (\{.*\})", out).group(1))  # type: ignore[union-attr]
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": float(re.search(r"P50 ([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": float(re.search(r"P99 ([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "cpu_s": usage.ru_utime + usage.ru_stime,
        **{f"status_{k}": float(v) for k, v in statuses.items()},
    }


def main(connections: int, seconds: int, tracing: bool = False) -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    sink = OtlpSink()
    with tempfile.TemporaryDirectory() as workdir, sink:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url} if tracing else {}
        server = Server(Path(workdir), TOKEN, env=env)
        server.start()
        base = server.url
        try:
            call(f"{base}/v1/products/hot", "PUT", {"on_hand": UNITS})
            health = wrk(f"{base}/healthz", "", connections, seconds, workdir)
            orders = wrk(f"{base}/v1/orders", ORDER, connections, seconds, workdir)
            level, placed = settled(base)
        finally:
            server.stop()
    acknowledged = int(orders.get("status_201", 0))
    others = {k: v for k, v in orders.items() if k.startswith("status_") and k != "status_201"}
    sold = UNITS - level["on_hand"]
    # wrk stops with up to one request in flight per connection: those orders were placed
    # (and answered) but wrk never read the answer.
    in_flight = placed - acknowledged
    verified = sold == placed and 0 <= in_flight <= connections and not others
    traced = f", tracing on ({sink.posts} OTLP exports)" if tracing else ""
    print(f"stockade HTTP bench: durable SQLite server, wrk {connections} connections, "
          f"{seconds}s per run{traced}")  # fmt: skip
    print(f"{'route':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    for label, r in (("GET /healthz", health), ("POST /v1/orders", orders)):
        ratio = r["rate"] / health["rate"]
        print(f"{label:<22}{r['rate']:>10,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{ratio:>8.2f}")
    print(f"units sold {sold:,}, orders placed {placed:,} (201s read by wrk {acknowledged:,}, "
          f"{in_flight} in flight at the stop), other answers {others}: "
          + ("verified" if verified else "FAILED"))  # fmt: skip
    return 0 if verified else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--tracing", action="store_true",
                        help="trace every request, exporting to a local OTLP sink")  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="orders through serve --workers N beside --workers 1, on SQLite "
                        "and PostgreSQL, hot and 1,000 products")  # fmt: skip
    parser.add_argument("--stores", default="sqlite,postgres",
                        help="with --workers: the stores to run on")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="with --workers: a smoke run (1 s, 8 connections)")  # fmt: skip
    args = parser.parse_args()
    if args.workers is not None:
        if shutil.which("wrk") is None:
            print("wrk is not installed: apt-get install wrk", file=sys.stderr)
            sys.exit(2)
        import bench.workers

        sys.exit(bench.workers.main(args.workers, args.connections, args.seconds,
                                    args.stores.split(","), args.quick))  # fmt: skip
    sys.exit(main(args.connections, args.seconds, args.tracing))
