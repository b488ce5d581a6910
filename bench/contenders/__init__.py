"""The comparison bench's contenders, in the order they run."""

from __future__ import annotations

from bench.contenders.base import Contender
from bench.contenders.postgres import RowLockPostgres
from bench.contenders.redis_lua import RedisLua
from bench.contenders.stockade_engine import StockadeMemory, StockadePostgres, StockadeSQLite
from bench.contenders.stockade_http import StockadeHttp

__all__ = ["CONTENDERS", "Contender"]

CONTENDERS: dict[str, type[Contender]] = {
    c.name: c
    for c in (
        StockadeMemory,
        StockadeSQLite,
        StockadePostgres,
        StockadeHttp,
        RowLockPostgres,
        RedisLua,
    )
}
