"""What asyncpg's errors mean to stockade, and closing a connection on its loop: shared by every
PostgreSQL user (the store, the key table, the books check and export). Imports asyncpg: import
this module only where PostgreSQL is used."""

from __future__ import annotations

import contextlib

import asyncpg

from stockade._asyncio import AsyncioThread

__all__ = ["REFUSED", "UNREACHABLE", "close_on"]

#: What a dropped connection, a connection left in a broken state, or an unreachable server
#: raises in asyncpg (StoreUnavailable, worth retrying). Anything else (a constraint violated,
#: bad data) is not retried.
UNREACHABLE = (
    OSError,
    TimeoutError,  # asyncio.TimeoutError is this one since Python 3.11
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)
#: What a batch or a stored row that breaks the schema's rules raises: the store is corrupt.
REFUSED = (asyncpg.exceptions.IntegrityConstraintViolationError, asyncpg.exceptions.DataError)


async def close_on(aio: AsyncioThread, conn: asyncpg.Connection | None) -> None:
    """Close ``conn`` on ``aio``'s loop (a dead connection needs nothing), then stop the loop."""
    if conn is not None:
        with contextlib.suppress(*UNREACHABLE):
            await aio.run(conn.close)
    aio.close()
