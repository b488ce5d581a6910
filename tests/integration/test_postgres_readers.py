"""The PostgreSQL store's history readers: one pool, however many reads start at once, and no
connection left open once the store is closed."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import trio

from stockade.persistence.postgres import PostgresStore


def connections(dsn: str, application_name: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            found: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                application_name,
            )
            return found
        finally:
            await conn.close()

    return asyncio.run(count())


async def test_concurrent_first_reads_share_one_pool_and_closing_leaves_none(postgres_dsn):
    """The engine's first history reads often come together (a caller's read, and the feed's
    pruning at start). Each used to find no pool yet and make its own, and only the last
    one made was ever closed: the others' connections stayed open."""
    name = f"stockade_readers_{secrets.token_hex(4)}"
    store = PostgresStore(f"{postgres_dsn}&application_name={name}")
    await store.load(0.0)
    try:
        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(store.order, f"missing-{n}")
    finally:
        await store.aclose()
    assert connections(postgres_dsn, name) == 0
