"""A database written by the previous release (schema version 1: products, orders without
allocations, movements without locations) opens with every order, key and unit intact."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from typing import Any

import msgspec
import pytest

import stockade
from stockade import IdempotencyConflict, LocationLevel, Order, StockLevel
from stockade.engine.orders import from_timestamp
from stockade.persistence.schema import MIGRATIONS, STATE_TABLE
from tests.books import assert_location_books_balance
from tests.integration.stores import StoreKind, postgres_kind, sqlite_kind

T0 = 1_000_000_000.0
DAY = 86_400.0


def lines(value: dict[str, int]) -> str:
    return msgspec.json.encode(value).decode()


#: orders as v1 wrote them: (id, status, lines, created_at, expires_at, idempotency_key)
V1_ORDERS = [
    ("o-held", "reserved", lines({"a": 2, "b": 1}), T0 - 10, T0 + 3600, "cart-1"),
    ("o-sold", "confirmed", lines({"a": 2}), T0 - 20, None, "buy-1"),
    ("o-paid", "confirmed", lines({"b": 1}), T0 - 25, T0 + 600, None),
    ("o-dropped", "cancelled", lines({"b": 1}), T0 - 30, T0 + 600, None),
    ("o-lapsed", "expired", lines({"a": 1}), T0 - 40, T0 - 35, "lapsed-1"),
    ("o-old", "confirmed", lines({"a": 1}), T0 - 2 * DAY, None, "old-key"),
    # v1 reused a key once its window had passed: two orders carry it, the newer one counts
    ("o-reused-old", "confirmed", lines({"b": 1}), T0 - 3 * DAY, None, "reused"),
    ("o-reused-new", "confirmed", lines({"a": 2}), T0 - 5, None, "reused"),
    # a hold that lapsed while v1 was stopped: the upgrade's start-up expires it
    ("o-stale", "reserved", lines({"b": 1}), T0 - 200, T0 - 100, None),
]
#: movements as v1 wrote them: (seq, sku, order_id, kind, d_on_hand, d_reserved, reason, at)
V1_MOVEMENTS = [
    (1, "a", None, "set", 14, 0, None, T0 - 4 * DAY),
    (2, "b", None, "set", 8, 0, None, T0 - 4 * DAY),
    (3, "b", "o-reused-old", "placed", -1, 0, None, T0 - 3 * DAY),
    (4, "a", "o-old", "placed", -1, 0, None, T0 - 2 * DAY),
    (5, "a", None, "adjusted", 1, 0, "recount", T0 - DAY),
    (6, "a", "o-lapsed", "placed", 0, 1, None, T0 - 40),
    (7, "a", "o-lapsed", "expired", 0, -1, None, T0 - 35),
    (8, "b", "o-dropped", "placed", 0, 1, None, T0 - 30),
    (9, "b", "o-dropped", "cancelled", 0, -1, None, T0 - 29),
    (10, "b", "o-paid", "placed", 0, 1, None, T0 - 25),
    (11, "b", "o-paid", "confirmed", -1, -1, None, T0 - 24),
    (12, "a", "o-sold", "placed", -2, 0, None, T0 - 20),
    (13, "a", "o-held", "placed", 0, 2, None, T0 - 10),
    (14, "b", "o-held", "placed", 0, 1, None, T0 - 10),
    (15, "a", "o-reused-new", "placed", -2, 0, None, T0 - 5),
    (16, "b", "o-stale", "placed", 0, 1, None, T0 - 200),
]
#: products as v1 kept them (the movements add up to these)
V1_PRODUCTS = [("a", 10, 2), ("b", 6, 2)]


def v1_statements() -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The statements that build a v1 database, with their rows (``?`` placeholders)."""
    return [
        (STATE_TABLE, []),
        ("INSERT INTO stockade_state VALUES (1, 1, ?, 0)", [(len(V1_MOVEMENTS),)]),
        *((ddl, []) for ddl in MIGRATIONS[0]),
        ("INSERT INTO products VALUES (?, ?, ?)", V1_PRODUCTS),
        ("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", V1_ORDERS),
        ("INSERT INTO movements VALUES (?, ?, ?, ?, ?, ?, ?, ?)", V1_MOVEMENTS),
    ]


def build_v1_sqlite(path: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement, rows in v1_statements():
            if rows:
                conn.executemany(statement, rows)
            else:
                conn.execute(statement)
    conn.close()


def build_v1_postgres(dsn: str) -> None:
    import asyncpg

    from stockade.persistence.sql import numbered

    async def build() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                for statement, rows in v1_statements():
                    if rows:
                        await conn.executemany(numbered(statement), rows)
                    else:
                        await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(build())


@pytest.fixture(params=["sqlite", "postgresql"])
def v1(request, tmp_path) -> StoreKind:
    """A store kind over a database the previous release wrote."""
    if request.param == "postgresql":
        dsn = request.getfixturevalue("postgres_dsn")
        build_v1_postgres(dsn)
        return postgres_kind(dsn)
    build_v1_sqlite(str(tmp_path / "stock.db"))
    return sqlite_kind(tmp_path)


def expected(row: tuple[Any, ...]) -> Order:
    order_id, status, encoded, created_at, expires_at, key = row
    decoded = msgspec.json.decode(encoded, type=dict[str, int])
    return Order(
        order_id, status, decoded, from_timestamp(created_at),
        None if expires_at is None else from_timestamp(expires_at), key,
        {sku: {"default": qty} for sku, qty in decoded.items()},
    )  # fmt: skip


async def test_a_v1_database_opens_with_every_order_intact(v1):
    orders = [expected(row) for row in V1_ORDERS]
    stale = msgspec.structs.replace(orders.pop(), status="expired")
    orders.append(stale)
    async with stockade.open_engine(store=v1.make(), wall_clock=lambda: T0) as engine:
        assert await engine.stock("a") == StockLevel("a", 10, 2, 8)
        assert await engine.stock("b") == StockLevel("b", 6, 1, 5)
        assert await engine.stock_by_location("a") == [
            LocationLevel("a", "default", 10, 2, 8, True)
        ]
        assert engine.locations() == [stockade.Location("default")]
        for order in orders:
            assert await engine.get_order(order.id) == order
        assert [o.id for o in await engine.list_orders()] == [
            o.id for o in sorted(orders, key=lambda o: o.created_at, reverse=True)
        ]
        assert [(m.seq, m.location, m.kind) for m in await engine.movements("b")] == [
            (2, "default", "set"), (3, "default", "placed"), (8, "default", "placed"),
            (9, "default", "cancelled"), (10, "default", "placed"),
            (11, "default", "confirmed"), (14, "default", "placed"),
            (16, "default", "placed"), (17, "default", "expired"),
        ]  # fmt: skip
        by_id = {o.id: o for o in orders}
        # the keys inside the window are answered as before, and take nothing
        assert (
            await engine.place_order({"a": 2, "b": 1}, idempotency_key="cart-1") == by_id["o-held"]
        )
        assert await engine.place_order({"a": 2}, idempotency_key="buy-1") == by_id["o-sold"]
        assert await engine.place_order({"a": 2}, idempotency_key="reused") == by_id["o-reused-new"]
        assert await engine.place_order({"a": 1}, idempotency_key="lapsed-1") == by_id["o-lapsed"]
        with pytest.raises(IdempotencyConflict):
            await engine.place_order({"b": 1}, idempotency_key="reused")
        assert await engine.stock("a") == StockLevel("a", 10, 2, 8)
        # a key outside the window was forgotten: a new order
        fresh = await engine.place_order({"a": 1}, idempotency_key="old-key")
        assert fresh.id != "o-old"
        # the v1 hold works as any other: its units are at default
        confirmed = await engine.confirm("o-held")
        returned = await engine.cancel("o-sold")  # a return of a v1 sale
        assert returned.allocations == {"a": {"default": 2}}
        levels = {sku: await engine.stock_by_location(sku) for sku in "ab"}
        totals = {sku: await engine.stock(sku) for sku in "ab"}
        now = [confirmed, returned, fresh] + [by_id[i] for i in by_id if i not in (
            "o-held", "o-sold")]  # fmt: skip
    assert totals == {"a": StockLevel("a", 9, 0, 9), "b": StockLevel("b", 5, 0, 5)}
    state = v1.read()
    assert state.last_seq > len(V1_MOVEMENTS)
    assert set(state.keys) == {"cart-1", "buy-1", "reused", "lapsed-1", "old-key"}
    assert state.keys["reused"].order_id == "o-reused-new"
    # v1's movements (now at default) and the new ones add up to every stock row
    assert_location_books_balance(levels, now, None, state.movements, totals, state.stock)
    for order in now:
        assert state.orders[order.id] == order


async def test_a_v1_database_is_migrated_once(v1):
    async with stockade.open_engine(store=v1.make(), wall_clock=lambda: T0) as engine:
        await engine.set_location("north", priority=1)
        await engine.transfer("a", 3, "default", "north")
    async with stockade.open_engine(
        store=v1.make(), wall_clock=lambda: T0 + 60, idempotency_ttl=timedelta(days=1)
    ) as engine:
        assert await engine.stock_by_location("a") == [
            LocationLevel("a", "default", 7, 2, 5, True),
            LocationLevel("a", "north", 3, 0, 3, True),
        ]
        assert (await engine.get_order("o-held")).status == "reserved"
    assert v1.read().last_seq == len(V1_MOVEMENTS) + 3  # the stale hold's expiry, and two
