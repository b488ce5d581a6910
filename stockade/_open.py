"""``open_engine``: an engine with its journal and store, running in a nursery of its own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import trio

from stockade.engine.allocation import Strategy
from stockade.engine.engine import (
    DEFAULT_KEY_TTL,
    DEFAULT_MAILBOX_SIZE,
    DEFAULT_MAX_HOLD,
    DEFAULT_MAX_HOLD_LIFETIME,
    Engine,
)
from stockade.engine.feed import FeedHub
from stockade.errors import InvalidRequest
from stockade.persistence.journal import Durability, Journal, Store
from stockade.persistence.memory import MemoryStore
from stockade.persistence.sqlite import SQLiteStore

__all__ = ["DEFAULT_EVENT_RETENTION", "open_engine"]

#: How long the change feed keeps its events.
DEFAULT_EVENT_RETENTION = timedelta(days=7)


async def _prune(journal: Journal, retention_s: float, scope: trio.CancelScope) -> None:
    with scope:
        await journal.prune_events(retention_s)


def _store_for(database: str | None, durability: Durability, feed: bool) -> Store:
    if database is None or database == "memory://":
        return MemoryStore(keep_state=False)
    if not isinstance(database, str):
        raise InvalidRequest(f"database must be a URL string or None, not {database!r}")
    if database.startswith("sqlite:///") and len(database) > len("sqlite:///"):
        return SQLiteStore(
            database[len("sqlite:///") :], durable=durability == "durable", feed=feed
        )
    if database.startswith(("postgresql://", "postgres://")):
        from stockade.persistence.postgres import PostgresStore  # imports asyncpg: only if used

        return PostgresStore(database, durable=durability == "durable", feed=feed)
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
    max_hold_lifetime: timedelta = DEFAULT_MAX_HOLD_LIFETIME,
    allocation: Strategy = "priority",
    feed: bool = True,
    event_retention: timedelta = DEFAULT_EVENT_RETENTION,
    shutdown_grace: float = 30.0,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Engine]:
    """Open an engine over ``database`` (``None``: memory; ``sqlite:///path/to/file.db``, a
    relative path, or ``sqlite:////absolute/path.db``; ``postgresql://user@host/db``, where
    ``?search_path=schema`` picks the schema) and yield it; close it on exit.

    Start-up loads the store's state (products and their stock per location, locations,
    channels, open holds, and the orders and idempotency keys inside the idempotency window;
    never the whole history); holds that lapsed while nothing ran expire at once. Finished
    orders leave memory once their idempotency window has passed and are read back from the
    store when asked for. ``max_hold`` bounds one hold (``hold_for``); ``max_hold_lifetime``
    bounds how far ``extend`` may push a hold from when it was placed. ``allocation`` is
    ``"priority"`` or ``"most_available"`` (see design.md §7). ``feed`` keeps the change feed
    (design.md §9): public events written with each commit, kept ``event_retention`` and read
    with ``engine.events()``; a memory store that keeps nothing (``None``) has no feed.

    ``durability`` is ``"durable"`` (a call returns once its change is committed) or
    ``"fast"`` (at once; a crash may lose what is buffered). It defaults to durable for a
    database and to fast in memory, where there is nothing to wait for. ``store`` passes a
    store object instead of a URL (tests). ``wall_clock`` gives UNIX time once, at start; from
    then on the engine's time advances with trio's clock.

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
        store = _store_for(database, durability, feed)
    elif database is not None:
        raise InvalidRequest("pass either a database URL or a store, not both")
    elif durability is None:
        durability = "fast" if isinstance(store, MemoryStore) else "durable"
    try:  # the store is closed however opening ends, or it may keep holding its lock
        snapshot = await store.load(wall_clock() - idempotency_ttl.total_seconds())
        hub = FeedHub(snapshot.last_event_seq) if feed and store.keeps_history else None
        journal = Journal(
            store, durability=durability, max_buffered=journal_size, start_seq=snapshot.last_seq,
            feed=hub,
        )  # fmt: skip
        engine = Engine(
            journal,
            history=store if store.keeps_history else None,
            feed=hub,
            mailbox_size=mailbox_size,
            idempotency_ttl=idempotency_ttl,
            max_hold=max_hold,
            max_hold_lifetime=max_hold_lifetime,
            allocation=allocation,
            wall_clock=wall_clock,
        )
        engine.restore(snapshot)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            await nursery.start(engine.run)
            pruning = trio.CancelScope()
            if hub is not None:
                nursery.start_soon(_prune, journal, event_retention.total_seconds(), pruning)
            try:
                yield engine
            finally:
                pruning.cancel()
                with trio.move_on_after(shutdown_grace, shield=True) as grace:
                    await engine.aclose()
                    await journal.aclose()
                if grace.cancelled_caught:
                    nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
