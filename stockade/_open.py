"""``open_engine``: an engine with its journal and store, running in a nursery of its own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import trio

from stockade.engine.engine import DEFAULT_KEY_TTL, DEFAULT_MAILBOX_SIZE, Engine
from stockade.engine.validation import DEFAULT_MAX_HOLD
from stockade.errors import InvalidRequest
from stockade.persistence.journal import Durability, Journal, Store
from stockade.persistence.memory import MemoryStore
from stockade.persistence.sqlite import SQLiteStore

__all__ = ["open_engine"]


def _store_for(database: str | None, durability: Durability) -> Store:
    if database is None or database == "memory://":
        return MemoryStore(keep_state=False)
    if not isinstance(database, str):
        raise InvalidRequest(f"database must be a URL string or None, not {database!r}")
    if database.startswith("sqlite:///") and len(database) > len("sqlite:///"):
        return SQLiteStore(database[len("sqlite:///") :], durable=durability == "durable")
    if database.startswith(("postgresql://", "postgres://")):
        from stockade.persistence.postgres import PostgresStore  # imports asyncpg: only if used

        return PostgresStore(database, durable=durability == "durable")
    raise InvalidRequest(
        f"unsupported database URL {database!r}: use None (memory), sqlite:///path "
        "or postgresql://..."
    )


@asynccontextmanager
async def open_engine(
    database: str | None = None,
    *,
    store: Store | None = None,
    durability: Durability | None = None,
    mailbox_size: int = DEFAULT_MAILBOX_SIZE,
    journal_size: int = 100_000,
    idempotency_ttl: timedelta = DEFAULT_KEY_TTL,
    max_hold: timedelta = DEFAULT_MAX_HOLD,
    shutdown_grace: float = 30.0,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Engine]:
    """Open an engine over ``database`` (``None``: memory; ``sqlite:///path/to/file.db``, a
    relative path, or ``sqlite:////absolute/path.db``; ``postgresql://user@host/db``, where
    ``?search_path=schema`` picks the schema) and yield it; close it on exit.

    Start-up loads the store's state (products, orders, open holds, idempotency keys); holds
    that lapsed while nothing ran expire at once. ``durability`` is ``"durable"`` (a call returns
    once its change is committed) or ``"fast"`` (at once; a crash may lose what is buffered).
    It defaults to durable for a database and to fast in memory, where there is nothing to
    wait for. ``store`` passes a store object instead of a URL (tests). ``wall_clock`` gives
    UNIX time once, at start; from then on the engine's time advances with trio's clock.

    On exit new calls fail with EngineClosed, calls in flight are answered, and the journal
    commits everything; after ``shutdown_grace`` seconds of that (a database that stays down),
    the rest is abandoned and the context exits anyway.
    """
    if durability not in (None, "durable", "fast"):
        raise InvalidRequest(f"durability must be 'durable' or 'fast', not {durability!r}")
    if store is None:
        memory = database is None or database == "memory://"
        if durability is None:
            durability = "fast" if memory else "durable"
        store = _store_for(database, durability)
    elif database is not None:
        raise InvalidRequest("pass either a database URL or a store, not both")
    elif durability is None:
        durability = "fast" if isinstance(store, MemoryStore) else "durable"
    try:  # the store is closed however opening ends, or it may keep holding its lock
        snapshot = await store.load()
        journal = Journal(
            store, durability=durability, max_buffered=journal_size, start_seq=snapshot.last_seq
        )
        engine = Engine(
            journal,
            mailbox_size=mailbox_size,
            idempotency_ttl=idempotency_ttl,
            max_hold=max_hold,
            wall_clock=wall_clock,
        )
        engine.restore(snapshot.products, snapshot.orders, snapshot.key_times)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            await nursery.start(engine.run)
            try:
                yield engine
            finally:
                with trio.move_on_after(shutdown_grace, shield=True) as grace:
                    await engine.aclose()
                    await journal.aclose()
                if grace.cancelled_caught:
                    nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
