"""prometheus-client's multiprocess mode: every front's HTTP series summed in one scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys

import trio

import stockade
from stockade.api.metrics import Metrics
from stockade.api.port import LocalEngine


async def main() -> None:
    async with stockade.open_engine(None) as engine:
        metrics = Metrics(LocalEngine(engine))
        for _ in range(int(sys.argv[1])):
            metrics.record("POST", "/v1/orders", 201, 0.002)
        if sys.argv[2] == "scrape":
            sys.stdout.write((await metrics.exposition()).decode())


trio.run(main)
"""


def run(directory: Path | None, orders: int, scrape: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(orders), "scrape" if scrape else "count"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def test_a_scrape_sums_the_http_series_of_every_process_of_the_directory(tmp_path):
    run(tmp_path, 3, scrape=False)  # another front, which has exited since
    run(tmp_path, 4, scrape=False)
    text = run(tmp_path, 2, scrape=True)
    assert 'stockade_http_requests_total{route="/v1/orders",status="201"} 9.0' in text
    assert 'stockade_order_latency_seconds_count{outcome="placed"} 9.0' in text
    assert "stockade_orders_placed_total 0.0" in text  # the engine's series, once
    assert text.count("# TYPE stockade_http_requests_total counter") <= 1


def test_without_the_directory_a_scrape_shows_its_own_process_only(tmp_path):
    text = run(None, 2, scrape=True)
    assert 'stockade_http_requests_total{route="/v1/orders",status="201"} 2.0' in text
