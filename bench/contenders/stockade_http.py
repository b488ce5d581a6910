"""stockade over HTTP: the real ``stockade serve`` (durable SQLite) in a subprocess.

One server serves a whole series of runs; each run's products carry the run's prefix. Every
caller has its own keep-alive connection, opened before the clock starts. The report reads the
server's SQLite file directly: in durable mode an order is answered 201 only once committed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from bench.contenders.base import Contender, Market, Outcome, Place, StoreReport
from bench.contenders.stockade_engine import read_sqlite
from bench.httpclient import HttpConnection, HttpError
from bench.server import Server
from bench.workloads import Lines

__all__ = ["StockadeHttp"]

TOKEN = "bench-token"
STOCKING_CONNECTIONS = 16


class StockadeHttp(Contender):
    name = "stockade-http"
    description = "stockade serve over HTTP/1.1 keep-alive, durable on SQLite"
    backend = "asyncio"

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.server: Server | None = None

    def prepare(self) -> str | None:
        self.workdir = Path(tempfile.mkdtemp(prefix="stockade-bench-http-"))
        self.server = Server(self.workdir, TOKEN)
        self.server.start()
        return None

    def finish(self) -> None:
        if self.server is not None and self.server.running():
            self.server.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @asynccontextmanager
    async def market(self, run: str, stock: dict[str, int]) -> AsyncIterator[Market]:
        assert self.server is not None, "prepare() first"
        market = HttpMarket(self.server, run)
        try:
            await market.stock(stock)
            yield market
        finally:
            await market.close()


class HttpMarket(Market):
    def __init__(self, server: Server, prefix: str) -> None:
        self.server = server
        self.prefix = prefix
        self.connections: list[HttpConnection] = []
        self.orders_before = 0

    async def connect(self, token: str | None = None) -> HttpConnection:
        conn = await HttpConnection.open(self.server.host, self.server.port, token)
        self.connections.append(conn)
        return conn

    async def stock(self, stock: dict[str, int]) -> None:
        self.orders_before = (await anyio.to_thread.run_sync(self._read)).orders
        pending = list(stock.items())

        async def worker() -> None:
            conn = await self.connect(self.server.token)
            while pending:
                sku, units = pending.pop()
                answer = await conn.request("PUT", f"/v1/products/{sku}", {"on_hand": units})
                if answer.status not in (200, 201):
                    raise HttpError(f"PUT {sku}: {answer.status} {answer.body[:200]!r}")

        async with anyio.create_task_group() as tg:
            for _ in range(STOCKING_CONNECTIONS):
                tg.start_soon(worker)

    async def caller(self) -> Place:
        conn = await self.connect(self.server.token)  # placing orders needs a key

        async def place(lines: Lines) -> Outcome:
            body = {"lines": [{"sku": sku, "qty": qty} for sku, qty in lines]}
            answer = await conn.request("POST", "/v1/orders", body)
            if answer.status == 201:
                return Outcome.PLACED
            if answer.status == 409:
                return Outcome.OUT_OF_STOCK
            if answer.status == 503:
                return Outcome.OVERLOADED
            raise HttpError(f"POST /v1/orders: {answer.status} {answer.body[:200]!r}")

        return place

    def _read(self) -> StoreReport:
        return read_sqlite(self.server.database, self.prefix)

    async def report(self) -> StoreReport:
        now = await anyio.to_thread.run_sync(self._read)
        return StoreReport(now.remaining, now.orders - self.orders_before, now.reserved)

    async def close(self) -> None:
        for conn in self.connections:
            await conn.aclose()
