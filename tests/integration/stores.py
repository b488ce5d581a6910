"""Store factories for the contract suite, and a reader of what each store committed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stockade.persistence.journal import Store
from stockade.persistence.memory import MemoryStore, Movement, StoreState
from stockade.persistence.rows import order_from_row
from stockade.persistence.sqlite import SQLiteStore


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
        return state_from_rows(
            conn.execute("SELECT sku, on_hand, reserved FROM products").fetchall(),
            conn.execute(
                "SELECT id, status, lines, created_at, expires_at, idempotency_key FROM orders"
            ).fetchall(),
            conn.execute(
                "SELECT seq, sku, order_id, kind, d_on_hand, d_reserved, at FROM movements "
                "ORDER BY seq"
            ).fetchall(),
            conn.execute("SELECT last_seq FROM stockade_state").fetchone()[0],
        )
    finally:
        conn.close()


def state_from_rows(products: Any, orders: Any, movements: Any, last_seq: int) -> StoreState:
    state = StoreState(keep_movements=True)
    state.products = {sku: (on_hand, reserved) for sku, on_hand, reserved in products}
    state.orders = {row[0]: order_from_row(row) for row in orders}
    state.movements = [Movement(*row) for row in movements]
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
            return state_from_rows(
                await conn.fetch("SELECT sku, on_hand, reserved FROM products"),
                await conn.fetch(
                    "SELECT id, status, lines, created_at, expires_at, idempotency_key FROM orders"
                ),
                await conn.fetch(
                    "SELECT seq, sku, order_id, kind, d_on_hand, d_reserved, at "
                    "FROM movements ORDER BY seq"
                ),
                await conn.fetchval("SELECT last_seq FROM stockade_state"),
            )
        finally:
            await conn.close()

    return asyncio.run(read())
