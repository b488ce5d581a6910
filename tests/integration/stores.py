"""Store factories for the contract suite, and a reader of what each store committed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stockade.persistence.journal import Store
from stockade.persistence.memory import MemoryStore, StoreState
from stockade.persistence.rows import (
    ORDER_COLUMNS,
    channel_from_row,
    key_from_row,
    location_from_row,
    movement_from_row,
    order_from_row,
)
from stockade.persistence.sqlite import SQLiteStore

#: What a reader selects, in the order state_from_rows takes it.
QUERIES = (
    "SELECT sku, location, on_hand, reserved FROM stock",
    f"SELECT {ORDER_COLUMNS} FROM orders",
    "SELECT seq, sku, location, kind, order_id, d_on_hand, d_reserved, reason, at FROM movements "
    "ORDER BY seq, location",
    "SELECT key, kind, order_id, fingerprint, at FROM idempotency_keys",
    "SELECT id, name, priority, active FROM locations",
    "SELECT id, locations FROM channels",
)


class StoreKind:
    """Makes stores over one database (a new object per engine start, as after a restart)."""

    def __init__(self, name: str, make: Callable[[], Store], read: Callable[[], StoreState]):
        self.name = name
        self.make = make
        self.read = read


def memory_kind() -> StoreKind:
    store = MemoryStore(keep_movements=True)
    return StoreKind("memory", lambda: store, lambda: store.state)


def sqlite_kind(tmp_path: Path) -> StoreKind:
    path = str(tmp_path / "stock.db")
    return StoreKind("sqlite", lambda: SQLiteStore(path), lambda: read_sqlite(path))


def read_sqlite(path: str) -> StoreState:
    conn = sqlite3.connect(path)
    try:
        stock, orders, movements, keys, locations, channels = (
            conn.execute(query).fetchall() for query in QUERIES
        )
        last_seq = conn.execute("SELECT last_seq FROM stockade_state").fetchone()[0]
        return state_from_rows(stock, orders, movements, keys, locations, channels, last_seq)
    finally:
        conn.close()


def state_from_rows(
    stock: Any, orders: Any, movements: Any, keys: Any, locations: Any, channels: Any,
    last_seq: int,
) -> StoreState:  # fmt: skip
    state = StoreState(keep_movements=True)
    state.stock = {(sku, loc): (on_hand, reserved) for sku, loc, on_hand, reserved in stock}
    state.orders = {row[0]: order_from_row(tuple(row)) for row in orders}
    state.movements = [movement_from_row(tuple(row)) for row in movements]
    state.keys = {row[0]: key_from_row(tuple(row)) for row in keys}
    state.locations = {row[0]: location_from_row(tuple(row)) for row in locations}
    state.channels = {row[0]: channel_from_row(tuple(row)) for row in channels}
    state.last_seq = last_seq
    return state


def postgres_kind(dsn: str) -> StoreKind:
    from stockade.persistence.postgres import PostgresStore

    return StoreKind("postgresql", lambda: PostgresStore(dsn), lambda: read_postgres(dsn))


def read_postgres(dsn: str) -> StoreState:
    import asyncio

    import asyncpg

    async def read() -> StoreState:
        conn = await asyncpg.connect(dsn)
        try:
            stock, orders, movements, keys, locations, channels = [
                await conn.fetch(query) for query in QUERIES
            ]
            last_seq = await conn.fetchval("SELECT last_seq FROM stockade_state")
            return state_from_rows(stock, orders, movements, keys, locations, channels, last_seq)
        finally:
            await conn.close()

    return asyncio.run(read())


def database_url(kind: str, tmp_path: Path, request: Any) -> str:
    """A database URL of ``kind`` ("sqlite" or "postgresql") for one test: a file in
    ``tmp_path``, or a fresh PostgreSQL schema (``request``'s ``postgres_dsn`` fixture)."""
    if kind == "postgresql":
        dsn: str = request.getfixturevalue("postgres_dsn")
        return dsn
    return f"sqlite:///{tmp_path / 'stock.db'}"
