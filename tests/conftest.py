import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

import stockade
from stockade import Engine, MemoryStore


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(keep_movements=True)


@pytest.fixture
async def engine(store: MemoryStore) -> AsyncIterator[Engine]:
    async with stockade.open_engine(store=store, durability="durable") as engine:
        yield engine


#: The PostgreSQL server the integration tests use (this machine's, by default).
POSTGRES_DSN = os.environ.get(
    "STOCKADE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema, dropped afterwards. Skips when no server
    answers, except under CI=true, where the PostgreSQL tests must run."""
    schema = f"stockade_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f"CREATE SCHEMA {schema}"))
    except (TimeoutError, OSError, Exception) as exc:
        reason = f"no PostgreSQL at {POSTGRES_DSN} ({exc!r}); set STOCKADE_TEST_POSTGRES_DSN"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI: {reason}")
        pytest.skip(reason)
    separator = "&" if "?" in POSTGRES_DSN else "?"
    yield f"{POSTGRES_DSN}{separator}search_path={schema}"
    asyncio.run(_admin(f"DROP SCHEMA {schema} CASCADE"))
