"""The read-only readers of :mod:`stockade.persistence.audit` for PostgreSQL: a session of their
own (never the owner's advisory lock), one ``REPEATABLE READ READ ONLY`` transaction, rows
streamed through server-side cursors. asyncpg runs on an asyncio loop of its own thread, as in
the PostgreSQL store."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg

from stockade._asyncio import AsyncioThread
from stockade.errors import StoreUnavailable
from stockade.persistence.audit import (
    COUNTS,
    EXPORT_STOCK,
    LEVELS,
    ORPHANS,
    StockRowSink,
    check_schema_version,
    count_row,
    level_row,
    order_moves,
    split_order_row,
)
from stockade.persistence.books import BooksCheck, BooksReport, Tally
from stockade.persistence.postgres_errors import UNREACHABLE
from stockade.persistence.rows import order_from_row, rules_from_row
from stockade.persistence.schema import RULES_SINCE
from stockade.persistence.sql import LOAD_RULES

__all__ = ["CONNECT_TIMEOUT_S", "PREFETCH", "check_postgres", "export_postgres"]

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
#: Rows a cursor fetches per round trip.
PREFETCH = 2000


async def _session(dsn: str, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(conn)`` on a fresh connection inside one read-only snapshot (on the loop)."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        exists = await conn.fetchval("SELECT to_regclass('stockade_state') IS NOT NULL")
        version = (
            await conn.fetchval("SELECT schema_version FROM stockade_state") if exists else None
        )
        check_schema_version(version, "the PostgreSQL database")
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await work(conn)
    except BaseException:
        conn.terminate()  # cancelled or broken mid-statement: nothing to close politely
        raise
    finally:
        if not conn.is_closed():
            await conn.close()


async def _run(dsn: str, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` in a session of its own on an asyncio loop thread, from trio. Cancellable
    (the statement in flight is cancelled and the connection dropped)."""
    aio = AsyncioThread("stockade-audit")
    try:
        result: T = await aio.run(_session, dsn, work)
        return result
    except UNREACHABLE as exc:
        raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
    finally:
        aio.close()


async def check_postgres(dsn: str, tally: Tally) -> BooksReport:
    """The books check of the PostgreSQL database at ``dsn`` (see audit.check_database)."""

    async def work(conn: Any) -> BooksReport:
        version = await conn.fetchval("SELECT schema_version FROM stockade_state")
        rules = (
            [rules_from_row(tuple(r)) for r in await conn.fetch(LOAD_RULES)]
            if version >= RULES_SINCE
            else []
        )
        check = BooksCheck(order_from_row, rules)
        async for row in conn.cursor(order_moves(version), prefetch=PREFETCH):
            tally.add(check.order_row(*split_order_row(row)))
        tally.add(check.end_orders())
        async for order_id, count in conn.cursor(ORPHANS, prefetch=PREFETCH):
            tally.add(check.orphan(order_id, count))
        async for row in conn.cursor(LEVELS, prefetch=PREFETCH):
            tally.add(check.level_row(level_row(row)))
        tally.add(check.end_levels())
        if version >= RULES_SINCE:
            async for row in conn.cursor(COUNTS, prefetch=PREFETCH):
                tally.add(check.count_row(count_row(row)))
        tally.add(check.end_counts())
        return check.report(tally)

    return await _run(dsn, work)


async def export_postgres(dsn: str, sink: StockRowSink) -> int:
    """Every stock row of the database at ``dsn`` to ``sink`` (see audit.export_stock)."""

    async def work(conn: Any) -> int:
        count = 0
        async for sku, location, on_hand in conn.cursor(EXPORT_STOCK, prefetch=PREFETCH):
            sink((sku, location, on_hand))
            count += 1
        return count

    return await _run(dsn, work)
