"""``open_engine``: an engine with its journal and store, running in a nursery of its own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import msgspec
import trio

from stockade.engine.allocation import STRATEGIES, Strategy
from stockade.engine.core import DEFAULT_KEY_TTL, DEFAULT_MAILBOX_SIZE, DEFAULT_MAX_HOLD_LIFETIME
from stockade.engine.engine import Engine
from stockade.engine.feed import FeedHub
from stockade.engine.validation import DEFAULT_MAX_HOLD
from stockade.errors import InvalidRequest
from stockade.persistence.journal import Durability, Journal, Store
from stockade.persistence.keys import KeyedStore
from stockade.persistence.memory import MemoryStore
from stockade.persistence.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_EVENT_RETENTION",
    "DEFAULT_JOURNAL_SIZE",
    "DEFAULT_SHUTDOWN_GRACE",
    "EngineOptions",
    "open_engine",
    "open_engine_and_store",
    "store_for",
]

#: Events the journal holds before new work is refused with Overloaded.
DEFAULT_JOURNAL_SIZE = 100_000
#: Seconds a closing engine waits for the journal to commit before it gives up.
DEFAULT_SHUTDOWN_GRACE = 30.0
#: How long the change feed keeps its events.
DEFAULT_EVENT_RETENTION = timedelta(days=7)


class EngineOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything :func:`open_engine` takes besides the store (see its docstring)."""

    mailbox_size: int = DEFAULT_MAILBOX_SIZE
    journal_size: int = DEFAULT_JOURNAL_SIZE
    idempotency_ttl: timedelta = DEFAULT_KEY_TTL
    max_hold: timedelta = DEFAULT_MAX_HOLD
    max_hold_lifetime: timedelta = DEFAULT_MAX_HOLD_LIFETIME
    allocation: Strategy = "priority"
    feed: bool = True
    event_retention: timedelta = DEFAULT_EVENT_RETENTION
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    wall_clock: Callable[[], float] = time.time

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> EngineOptions:
        """The options named in ``arguments`` (an entry point's ``locals()``, whose keyword
        parameters are these fields: a test holds every entry point to that), unchecked."""
        return cls(**{name: arguments[name] for name in cls.__struct_fields__})

    def check(self) -> None:
        """Refuse an option of the wrong type or range with InvalidRequest, before anything
        is opened."""
        for name, size in (("mailbox_size", self.mailbox_size),
                           ("journal_size", self.journal_size)):  # fmt: skip
            if type(size) is not int or size < 1:
                raise InvalidRequest(f"{name} must be a positive integer, not {size!r}")
        spans = (("idempotency_ttl", self.idempotency_ttl), ("max_hold", self.max_hold),
                 ("max_hold_lifetime", self.max_hold_lifetime),
                 ("event_retention", self.event_retention))  # fmt: skip
        for name, span in spans:
            if not isinstance(span, timedelta) or span <= timedelta(0):
                raise InvalidRequest(f"{name} must be a positive timedelta, not {span!r}")
        grace = self.shutdown_grace
        if not isinstance(grace, int | float) or isinstance(grace, bool) or not grace >= 0:
            raise InvalidRequest(f"shutdown_grace must be seconds (0 or more), not {grace!r}")
        if not callable(self.wall_clock):
            raise InvalidRequest(
                f"wall_clock must be a function giving UNIX time, not {self.wall_clock!r}"
            )
        if self.allocation not in STRATEGIES:
            raise InvalidRequest(
                f"allocation must be one of {', '.join(STRATEGIES)}, not {self.allocation!r}"
            )
        if type(self.feed) is not bool:
            raise InvalidRequest(f"feed must be True or False, not {self.feed!r}")


def store_for(
    database: str | None, durability: Durability, feed: bool = True, *, standby: bool = True
) -> KeyedStore:
    """The store a database URL names, not yet opened (InvalidRequest for a bad URL).
    ``standby=False``: a PostgreSQL store owned by another instance is refused at once
    (StoreInUse) rather than waited for; a SQLite file always is."""
    if database is None or database == "memory://":
        return MemoryStore(keep_state=False)
    if not isinstance(database, str):
        raise InvalidRequest(f"database must be a URL string or None, not {database!r}")
    durable = durability == "durable"
    if database.startswith("sqlite:///") and len(database) > len("sqlite:///"):
        return SQLiteStore(database[len("sqlite:///") :], durable=durable, feed=feed)
    if database.startswith(("postgresql://", "postgres://")):
        from stockade.persistence.postgres import PostgresStore  # imports asyncpg: only if used

        return PostgresStore(database, durable=durable, feed=feed, standby=standby)
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
    journal_size: int = DEFAULT_JOURNAL_SIZE,
    idempotency_ttl: timedelta = DEFAULT_KEY_TTL,
    max_hold: timedelta = DEFAULT_MAX_HOLD,
    max_hold_lifetime: timedelta = DEFAULT_MAX_HOLD_LIFETIME,
    allocation: Strategy = "priority",
    feed: bool = True,
    event_retention: timedelta = DEFAULT_EVENT_RETENTION,
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Engine]:
    """Open an engine over ``database`` (``None``: memory; ``sqlite:///path/to/file.db``, a
    relative path, or ``sqlite:////absolute/path.db``; ``postgresql://user@host/db``, where
    ``?search_path=schema`` picks the schema) and yield it; close it on exit.

    Start-up loads the store's state (products and their stock per location, locations,
    channels, open holds, and the orders and idempotency keys inside the idempotency window;
    never the whole history); holds that lapsed while nothing ran expire at once. Finished
    orders leave memory once their idempotency window (``idempotency_ttl``) has passed and are
    read back from the store when asked for. ``max_hold`` bounds one hold (``hold_for``);
    ``max_hold_lifetime`` bounds how far ``extend`` may push a hold from when it was placed.
    ``allocation`` is ``"priority"`` or ``"most_available"`` (design.md §7). ``feed`` keeps the
    change feed (design.md §9): public events written with each commit, kept
    ``event_retention`` and read with ``engine.events()``; a memory store that keeps nothing
    (``None``) has no feed and no history.

    ``durability`` is ``"durable"`` (a call returns once its change is committed) or
    ``"fast"`` (at once; a crash may lose what is buffered). It defaults to durable for a
    database and to fast in memory, where there is nothing to wait for. ``store`` passes a
    store object instead of a URL (tests). ``wall_clock`` gives UNIX time once, at start; from
    then on the engine's time advances with trio's clock.

    On exit new calls fail with EngineClosed, calls in flight are answered, and the journal
    commits everything; after ``shutdown_grace`` seconds of that (a database that stays down),
    the rest is abandoned and the context exits anyway.

    Raises InvalidRequest for a bad URL or option, before anything is opened; a StoreError
    when the store cannot be used (StoreInUse, StoreUnavailable, CorruptStore,
    IncompatibleStore). Opening blocks while the store loads (a PostgreSQL standby waits here
    for the owner to go); it can be cancelled.
    """
    options = EngineOptions.from_arguments(locals())
    async with open_engine_and_store(database, store, durability, options) as (engine, _):
        yield engine


@asynccontextmanager
async def open_engine_and_store(
    database: str | None = None,
    store: Store | None = None,
    durability: Durability | None = None,
    options: EngineOptions = EngineOptions(),  # noqa: B008 (frozen: safe to share)
    *,
    record_commits: bool = False,
) -> AsyncIterator[tuple[Engine, Store]]:
    """:func:`open_engine`, yielding the store too (for the server, which keeps its API keys
    there). ``record_commits``: the journal hands each durable wait its commit's times (see
    :class:`~stockade.persistence.journal.Journal`), for tracing. Internal."""
    if durability not in (None, "durable", "fast"):
        raise InvalidRequest(f"durability must be 'durable' or 'fast', not {durability!r}")
    options.check()
    if store is None:
        memory = database is None or database == "memory://"
        if durability is None:
            durability = "fast" if memory else "durable"
        store = store_for(database, durability, options.feed)
    elif database is not None:
        raise InvalidRequest("pass either a database URL or a store, not both")
    elif durability is None:
        durability = "fast" if isinstance(store, MemoryStore) else "durable"
    try:  # the store is closed however opening ends, or it may keep holding its lock
        snapshot = await store.load(options.wall_clock() - options.idempotency_ttl.total_seconds())
        hub = FeedHub(snapshot.last_event_seq) if options.feed and store.keeps_history else None
        journal = Journal(
            store, durability=durability, max_buffered=options.journal_size,
            start_seq=snapshot.last_seq, feed=hub, record_commits=record_commits,
        )  # fmt: skip
        engine = Engine(
            journal,
            history=store if store.keeps_history else None,
            feed=hub,
            mailbox_size=options.mailbox_size,
            idempotency_ttl=options.idempotency_ttl,
            max_hold=options.max_hold,
            max_hold_lifetime=options.max_hold_lifetime,
            allocation=options.allocation,
            wall_clock=options.wall_clock,
        )
        engine.restore(snapshot)
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            await nursery.start(engine.run)
            pruning = trio.CancelScope()
            if hub is not None:
                retention_s = options.event_retention.total_seconds()
                nursery.start_soon(_prune, journal, retention_s, pruning)
            try:
                yield engine, store
            finally:
                pruning.cancel()
                with trio.move_on_after(options.shutdown_grace, shield=True) as grace:
                    await engine.aclose()
                    await journal.aclose()
                if grace.cancelled_caught:
                    nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()


async def _prune(journal: Journal, retention_s: float, scope: trio.CancelScope) -> None:
    with scope:
        await journal.prune_events(retention_s)
