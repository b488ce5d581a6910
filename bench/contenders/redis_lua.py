"""The Redis approach: one Lua script per order checks every line's counter, then decrements
them all and appends the order to a list, atomically (Redis runs one script at a time).

This machine's Redis keeps nothing on disk (no AOF, no snapshots), so this contender is a
memory-only one: compare it with stockade in memory, not with the durable contenders.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis

from bench.contenders.base import Contender, Market, Outcome, Place, StoreReport, reachable
from bench.workloads import Lines

__all__ = ["RedisLua"]

REDIS_HOST = os.environ.get("STOCKADE_BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("STOCKADE_BENCH_REDIS_PORT", "6379"))

#: KEYS: one stock counter per line, then the orders list; ARGV: each line's qty, then the
#: order. Returns 1 when placed, 0 when some line is short (nothing changed).
RESERVE = """
local lines = #KEYS - 1
for i = 1, lines do
  local left = tonumber(redis.call('GET', KEYS[i]))
  if left == nil or left < tonumber(ARGV[i]) then return 0 end
end
for i = 1, lines do redis.call('DECRBY', KEYS[i], ARGV[i]) end
redis.call('RPUSH', KEYS[lines + 1], ARGV[lines + 1])
return 1
"""


class RedisLua(Contender):
    name = "redis-lua"
    description = "Redis Lua reserve script (redis-py asyncio; this Redis persists nothing)"
    backend = "asyncio"

    def __init__(self, host: str = REDIS_HOST, port: int = REDIS_PORT) -> None:
        self.host = host
        self.port = port

    def prepare(self) -> str | None:
        why = reachable(self.host, self.port)
        return None if why is None else f"Redis: {why}"

    @asynccontextmanager
    async def market(self, run: str, stock: dict[str, int]) -> AsyncIterator[Market]:
        market = RedisMarket(self.host, self.port, f"stockade_bench:{run}:", list(stock))
        admin = await market.connect()
        try:
            await admin.mset({market.key(sku): units for sku, units in stock.items()})
            yield market
        finally:
            await admin.delete(*[market.key(sku) for sku in stock], market.orders)
            for client in market.clients:
                await client.aclose()


class RedisMarket(Market):
    """Each caller has a connection of its own, opened before the clock starts, like the HTTP
    contender's callers. (A shared redis-py pool is worse for Redis: its blocking pool is not
    fair, and with 64 connections for 256 callers some waited ~1.9 s; one that grows on demand
    opens connections one at a time under a lock while callers wait.)"""

    def __init__(self, host: str, port: int, namespace: str, skus: list[str]) -> None:
        self.host = host
        self.port = port
        self.namespace = namespace
        self.orders = f"{namespace}orders"
        self.skus = skus
        self.clients: list[redis.Redis] = []

    async def connect(self) -> redis.Redis:
        client = redis.Redis(host=self.host, port=self.port, single_connection_client=True)
        self.clients.append(client)
        await client.ping()
        return client

    def key(self, sku: str) -> str:
        return f"{self.namespace}stock:{sku}"

    async def caller(self) -> Place:
        script = (await self.connect()).register_script(RESERVE)

        async def place(lines: Lines) -> Outcome:
            keys = [self.key(sku) for sku, _ in lines]
            args = [qty for _, qty in lines]
            placed = await script(keys=[*keys, self.orders], args=[*args, json.dumps(lines)])
            return Outcome.PLACED if placed == 1 else Outcome.OUT_OF_STOCK

        return place

    async def report(self) -> StoreReport:
        client = self.clients[0]
        values = await client.mget([self.key(sku) for sku in self.skus])
        orders = await client.llen(self.orders)
        return StoreReport(
            {sku: int(v) for sku, v in zip(self.skus, values, strict=True) if v is not None},
            int(orders),
        )
