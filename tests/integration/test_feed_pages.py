"""The SQL stores keep the change feed in pages (stockade/persistence/pages.py): a batch of
hundreds of orders reads back event by event from any position, filtered by type; pruning takes
whole pages from the oldest, never leaving a hole; a database of schema 5 (a row per event)
opens with every event it had."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest
import trio

import stockade
from stockade.persistence import sql
from stockade.persistence.journal import Store
from stockade.persistence.pages import PAGE_SIZE
from stockade.persistence.postgres import PostgresStore
from stockade.persistence.schema import INIT_STATE, MIGRATIONS, STATE_TABLE
from stockade.persistence.sqlite import SQLiteStore

KINDS = ["sqlite", "postgresql"]


def make_store(kind: str, request: Any, tmp_path: Any) -> tuple[Store, Any]:
    """A store of ``kind``, and a function running SQL on its database (for the checks)."""
    if kind == "sqlite":
        path = str(tmp_path / "stock.db")

        def run_sqlite(statement: str, *args: Any) -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(path)
            try:
                with conn:
                    return conn.execute(statement, args).fetchall()
            finally:
                conn.close()

        return SQLiteStore(path), run_sqlite
    dsn = request.getfixturevalue("postgres_dsn")

    def run_postgres(statement: str, *args: Any) -> list[tuple[Any, ...]]:
        import asyncpg

        async def go() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(dsn)
            try:
                numbered = statement
                for i in range(len(args)):
                    numbered = numbered.replace("?", f"${i + 1}", 1)
                return [tuple(r) for r in await conn.fetch(numbered, *args)]
            finally:
                await conn.close()

        return asyncio.run(go())

    return PostgresStore(dsn), run_postgres


@pytest.mark.parametrize("kind", KINDS)
async def test_a_batch_of_hundreds_of_orders_reads_back_from_any_position(kind, request, tmp_path):
    store, run = make_store(kind, request, tmp_path)
    orders = PAGE_SIZE * 2 + 50
    async with stockade.open_engine(store=store, durability="durable") as engine:
        await engine.set_stock("a", orders)
        async with trio.open_nursery() as nursery:  # all in the journal before it commits
            for _ in range(orders):
                nursery.start_soon(engine.place_order, {"a": 1})
        everything, head = await engine.event_page(0, 1000)
        assert [e.seq for e in everything] == list(range(1, head + 1))  # gap-free
        placed = [e for e in everything if e.type == "order.placed"]
        assert len(placed) == orders and len({e.data["id"] for e in placed}) == orders
        assert everything[-1].type == "product.sold_out"
        pages = run("SELECT count(*), max(last_seq - first_seq + 1) FROM event_pages")
        assert pages[0][1] == PAGE_SIZE and pages[0][0] < head / 10  # packed, not a row each
        if kind == "postgresql":  # pages are compressed, with lz4 when the server has it
            (lz4,) = run(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            )[0]
            methods = run(
                "SELECT DISTINCT pg_column_compression(data) FROM event_pages "
                "WHERE last_seq - first_seq + 1 = ?",
                PAGE_SIZE,
            )
            assert methods == [("lz4" if lz4 else "pglz",)]
        for after in (0, 1, 2, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 3, head - 2, head):
            for limit in (1, 7, PAGE_SIZE + 1, 1000):
                page = await store.events(after, limit)
                assert page == everything[after : after + limit]
        wanted = ("stock.changed", "product.sold_out")
        filtered = await store.events(0, 1000, wanted)
        assert filtered == [e for e in everything if e.type in wanted]
        # a reader of one type is sent only the pages that may hold it, not the orders' pages
        statement, params = sql.pages_after(("product.sold_out",))
        sent = [(first, last) for last, first, *_ in run(statement, 0, *params, 100)]
        (sold_out,) = [e.seq for e in everything if e.type == "product.sold_out"]
        assert len(sent) == 1 and sent[0][0] <= sold_out <= sent[0][1]
        assert (
            await store.events(2, 1, ("stock.changed",))
            == [e for e in everything if e.type == "stock.changed" and e.seq > 2][:1]
        )


@pytest.mark.parametrize("kind", KINDS)
async def test_pruning_takes_whole_pages_from_the_oldest_and_never_leaves_a_hole(
    kind, request, tmp_path
):
    store, run = make_store(kind, request, tmp_path)
    async with stockade.open_engine(store=store, durability="durable") as engine:
        for units in (1, 2, 3):
            await engine.set_stock("a", units)
        _, head = await engine.event_page(0)
        assert await store.feed_bounds() == (1, head)
        # the second page's time stepped back past the cut-off (a clock set back): the first
        # page goes, and nothing after the third page's, which is too new, goes with it
        rows = run("SELECT last_seq FROM event_pages ORDER BY last_seq")
        times = {rows[0][0]: 1.0, rows[1][0]: 9.0, rows[2][0]: 2.0}
        for last_seq, at in times.items():
            run("UPDATE event_pages SET at = ? WHERE last_seq = ?", at, last_seq)
        assert await store.prune_events(5.0, 10) == 1
        first, _ = await store.feed_bounds()
        assert first == rows[0][0] + 1
        assert await store.prune_events(5.0, 10) == 0  # the page of time 9 holds the rest
        assert await store.prune_events(10.0, 1) == 1  # one page a call
        assert (await store.feed_bounds())[0] == rows[1][0] + 1
        with pytest.raises(stockade.FeedGone):
            await engine.event_page(1)
        events, _ = await engine.event_page(rows[1][0])
        assert [e.seq for e in events] == list(range(rows[1][0] + 1, head + 1))


def test_a_schema_5_database_opens_with_its_events(tmp_path):
    now = int(time.time()) + 0.25  # within the retention (or start-up prunes), exact in µs
    path = str(tmp_path / "stock.db")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(STATE_TABLE)
        conn.execute(INIT_STATE)
        for statement in (s for step in MIGRATIONS[:5] for s in step):
            conn.execute(statement)
        conn.execute("UPDATE stockade_state SET schema_version = 5, last_seq = 1")
        conn.execute("UPDATE stockade_state SET last_event_seq = 3")
        conn.execute("INSERT INTO stock VALUES ('a', 'default', 4, 0)")
        conn.execute("INSERT INTO movements VALUES (1, 'a', 'default', 'set', NULL, 4, 0, NULL, 5)")
        old = [
            (1, "stock.changed", now - 9, "a", '{"location_level":{"sku":"a"},"stock_level":{}}'),
            (2, "product.back_in_stock", now - 9, "a", '{"sku":"a","stock_level":{}}'),
            (3, "order.placed", now - 1, None, '{"id":"o-1"}'),
        ]
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", old)
    conn.close()

    async def main() -> None:
        async with stockade.open_engine(f"sqlite:///{path}") as engine:
            events, head = await engine.event_page(0)
            assert head == 3
            assert [(e.seq, e.type, e.at.timestamp(), e.data) for e in events] == [
                (1, "stock.changed", now - 9, {"location_level": {"sku": "a"}, "stock_level": {}}),
                (2, "product.back_in_stock", now - 9, {"sku": "a", "stock_level": {}}),
                (3, "order.placed", now - 1, {"id": "o-1"}),
            ]
            await engine.set_stock("a", 5)
            later, _ = await engine.event_page(3)
            assert [e.seq for e in later] == [4]  # numbered on from the old ones

    trio.run(main)
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "events" not in tables and "events_by_at" not in tables
