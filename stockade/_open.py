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
from stockade.persistence.keys import KeyedStore
from stockade.persistence.memory import MemoryStore
from stockade.persistence.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_JOURNAL_SIZE",
    "DEFAULT_SHUTDOWN_GRACE",
    "open_engine",
    "open_engine_and_store",
    "store_for",
]

#: Events the journal holds before new work is refused with Overloaded.
DEFAULT_JOURNAL_SIZE = 100_000
#: Seconds a closing engine waits for the journal to commit before it gives up.
DEFAULT_SHUTDOWN_GRACE = 30.0


def store_for(database: str | None, durability: Durability) -> KeyedStore:
    """The store a database URL names, not yet opened (InvalidRequest for a bad URL)."""
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


def _check_options(
    mailbox_size: object,
    journal_size: object,
    idempotency_ttl: object,
    max_hold: object,
    shutdown_grace: object,
    wall_clock: object,
) -> None:
    """Refuse an engine option of the wrong type or range with InvalidRequest, before
    anything is opened."""
    for name, size in (("mailbox_size", mailbox_size), ("journal_size", journal_size)):
        if type(size) is not int or size < 1:
            raise InvalidRequest(f"{name} must be a positive integer, not {size!r}")
    for name, span in (("idempotency_ttl", idempotency_ttl), ("max_hold", max_hold)):
        if not isinstance(span, timedelta) or span < timedelta(0):
            raise InvalidRequest(f"{name} must be a timedelta of zero or more, not {span!r}")
    grace = shutdown_grace
    if not isinstance(grace, int | float) or isinstance(grace, bool) or not grace >= 0:  # or NaN
        raise InvalidRequest(f"shutdown_grace must be seconds (0 or more), not {grace!r}")
    if not callable(wall_clock):
        raise InvalidRequest(f"wall_clock must be a function giving UNIX time, not {wall_clock!r}")


@asynccontextmanager
async def open_engine(
    database: str | None = None,
    *,
    store: Store | None = None,
    durability: Durability | None = None,
    mailbox_size: int = DEFAULT_MAILBOX_SIZE,
    journal_size: int = DEFAULT_JOURNAL_SIZE,
    idempotency_ttl: timedelta = DEFAULT_KEY_TTL,
    max_hold: timedelta = DEFAULT_MAX_HOLD,
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
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

    Raises InvalidRequest for a bad URL or option, before anything is opened; a StoreError
    when the store cannot be used (StoreInUse, StoreUnavailable, CorruptStore,
    IncompatibleStore). Opening blocks while the store loads (a PostgreSQL standby waits here
    for the owner to go); it can be cancelled.
    """
    async with open_engine_and_store(
        database,
        store=store,
        durability=durability,
        mailbox_size=mailbox_size,
        journal_size=journal_size,
        idempotency_ttl=idempotency_ttl,
        max_hold=max_hold,
        shutdown_grace=shutdown_grace,
        wall_clock=wall_clock,
    ) as (engine, _):
        yield engine


@asynccontextmanager
async def open_engine_and_store(
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
) -> AsyncIterator[tuple[Engine, Store]]:
    """:func:`open_engine`, yielding the store too (for the server, which keeps its API keys
    there). Internal: takes and does exactly what ``open_engine`` does."""
    if durability not in (None, "durable", "fast"):
        raise InvalidRequest(f"durability must be 'durable' or 'fast', not {durability!r}")
    _check_options(
        mailbox_size, journal_size, idempotency_ttl, max_hold, shutdown_grace, wall_clock
    )
    if store is None:
        memory = database is None or database == "memory://"
        if durability is None:
            durability = "fast" if memory else "durable"
        store = store_for(database, durability)
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
                yield engine, store
            finally:
                with trio.move_on_after(shutdown_grace, shield=True) as grace:
                    await engine.aclose()
                    await journal.aclose()
                if grace.cancelled_caught:
                    nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
