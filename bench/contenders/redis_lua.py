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
#: as many connections as concurrent callers (opened on demand): redis-py's blocking pool is
#: not fair, and a smaller one starved some callers for seconds (p99 ~1.9 s at 256 callers)
POOL_SIZE = 4096

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
        pool = redis.BlockingConnectionPool(
            host=self.host, port=self.port, max_connections=POOL_SIZE, timeout=60
        )
        client = redis.Redis(connection_pool=pool)
        market = RedisMarket(client, f"stockade_bench:{run}:")
        try:
            await client.mset({market.key(sku): units for sku, units in stock.items()})
            market.skus = list(stock)
            yield market
        finally:
            await client.delete(*[market.key(sku) for sku in stock], market.orders)
            await client.aclose()
            await pool.aclose()


class RedisMarket(Market):
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.orders = f"{namespace}orders"
        self.script = client.register_script(RESERVE)
        self.skus: list[str] = []

    def key(self, sku: str) -> str:
        return f"{self.namespace}stock:{sku}"

    async def caller(self) -> Place:
        return self.place

    async def place(self, lines: Lines) -> Outcome:
        keys = [self.key(sku) for sku, _ in lines]
        args = [qty for _, qty in lines]
        placed = await self.script(keys=[*keys, self.orders], args=[*args, json.dumps(lines)])
        return Outcome.PLACED if placed == 1 else Outcome.OUT_OF_STOCK

    async def report(self) -> StoreReport:
        values = await self.client.mget([self.key(sku) for sku in self.skus])
        orders = await self.client.llen(self.orders)
        return StoreReport(
            {sku: int(v) for sku, v in zip(self.skus, values, strict=True) if v is not None},
            int(orders),
        )
