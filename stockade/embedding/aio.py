"""The engine's API awaitable from asyncio code (FastAPI, aiohttp, ...).

The engine runs on its own trio thread (:class:`~stockade.embedding.thread.EngineThread`); each
call is handed to it and its future wrapped for the calling asyncio loop, so any number of
asyncio tasks, on any number of loops, can call at once without blocking their loop. This is the
one module outside the PostgreSQL store that touches asyncio: asyncio hosts are what it is for.

Cancelling the asyncio task only stops it waiting; the engine finishes the call (see
:mod:`stockade.embedding.thread`).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar

import trio

from stockade._open import (
    DEFAULT_EVENT_RETENTION,
    DEFAULT_JOURNAL_SIZE,
    DEFAULT_SHUTDOWN_GRACE,
    EngineOptions,
)
from stockade.embedding.thread import EngineThread
from stockade.engine.allocation import Strategy
from stockade.engine.core import DEFAULT_KEY_TTL, DEFAULT_MAILBOX_SIZE, DEFAULT_MAX_HOLD_LIFETIME
from stockade.engine.engine import Engine
from stockade.engine.models import Event
from stockade.engine.validation import DEFAULT_MAX_HOLD
from stockade.persistence.journal import Durability, Store
from stockade.protocol.calls import CallBase, EventsCall
from stockade.protocol.dispatch import dispatch, next_item, start_stream
from stockade.protocol.surface import AsyncEngineCalls

__all__ = ["AsyncioEngine", "AsyncioEvents", "open_asyncio_engine"]

P = ParamSpec("P")
T = TypeVar("T")


class _Outbox:
    """Replies bound for one asyncio loop, handed over with one ``call_soon_threadsafe`` per
    batch rather than per reply."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.replies: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self.scheduled = False

    def put(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        """On the engine thread."""
        self.replies.append((future, result, error))
        if not self.scheduled:
            self.scheduled = True
            with suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self.loop.call_soon_threadsafe(self.deliver)

    def deliver(self) -> None:
        """On the loop."""
        self.scheduled = False  # before popping: a reply put from now on schedules again
        replies = self.replies
        while replies:
            future, result, error = replies.popleft()
            if future.cancelled():
                continue  # the task gave up waiting; the engine finished the call anyway
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


class _LoopReply(Generic[T]):
    __slots__ = ("future", "outbox")

    def __init__(self, outbox: _Outbox) -> None:
        self.outbox = outbox
        self.future: asyncio.Future[T] = outbox.loop.create_future()

    def settle(self, result: T, error: BaseException | None) -> None:
        self.outbox.put(self.future, result, error)


class AsyncioEngine(AsyncEngineCalls):
    """Same names, arguments, results and errors as :class:`stockade.Engine`, awaitable from
    asyncio (written once, in :class:`~stockade.protocol.surface.AsyncEngineCalls`; each call
    goes through :func:`~stockade.protocol.dispatch.dispatch` on the engine thread). Safe to
    share between tasks and loops. A call never blocks its loop; cancelling the awaiting task
    only stops it waiting."""

    def __init__(self, thread: EngineThread) -> None:
        self.thread = thread
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
            weakref.WeakKeyDictionary()
        )

    async def _call(self, call: CallBase[T]) -> T:
        return await self._submit(dispatch, call)

    def _submit(
        self, fn: Callable[[Engine, Any], Awaitable[T]], argument: Any
    ) -> asyncio.Future[T]:
        """``fn(engine, argument)`` started on the engine thread; its outcome, as a future of
        the running loop."""
        loop = asyncio.get_running_loop()
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox(loop)
        reply: _LoopReply[T] = _LoopReply(outbox)
        self.thread.enqueue(fn, (argument,), {}, reply)
        return reply.future

    def events(self, after: int = 0, types: Iterable[str] | None = None) -> AsyncioEvents:
        """The change feed after ``after`` (see :meth:`stockade.Engine.events`), as an asyncio
        async iterator; ``cursor`` is the seq of the last event read."""
        return AsyncioEvents(self, EventsCall(after, types))  # type: ignore[arg-type]


class AsyncioEvents:
    """The change feed read from asyncio (see :meth:`AsyncioEngine.events`). Each step waits
    on the engine thread for the next event. Cancelling the waiting task loses nothing: the
    event the engine thread was fetching is the next one this iterator returns."""

    def __init__(self, handle: AsyncioEngine, call: EventsCall) -> None:
        self._handle = handle
        self._call = call
        self._reader: asyncio.Future[AsyncIterator[Event]] | None = None
        self._next: asyncio.Future[Event] | None = None
        self.cursor = call.after

    def __aiter__(self) -> AsyncioEvents:
        return self

    async def __anext__(self) -> Event:
        if self._reader is None:
            self._reader = self._handle._submit(start_stream, self._call)
        reader = await asyncio.shield(self._reader)
        if self._next is None:
            self._next = self._handle._submit(next_item, reader)
        fetching = self._next
        try:
            event = await asyncio.shield(fetching)  # cancelled: the next step takes its event
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._next = None  # it failed: the next step asks again
            raise
        self._next = None
        self.cursor = event.seq
        return event


@asynccontextmanager
async def open_asyncio_engine(
    database: str | None = None,
    *,
    clock: trio.abc.Clock | None = None,
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
) -> AsyncIterator[AsyncioEngine]:
    """From asyncio: run an engine on its own thread for the ``async with`` block::

        async with stockade.open_asyncio_engine("sqlite:///stock.db") as engine:
            order = await engine.place_order({"sku-1": 1})

    Starting and stopping (which commits the journal) run off the event loop, so the loop keeps
    serving meanwhile. ``clock`` is the thread's (see :class:`EngineThread`); the rest are
    :func:`stockade.open_engine`'s.
    """
    options = EngineOptions.from_arguments(locals())
    thread = EngineThread.with_options(
        database, options, clock=clock, store=store, durability=durability
    )
    await asyncio.to_thread(thread.start)
    try:
        yield AsyncioEngine(thread)
    finally:
        await asyncio.to_thread(thread.stop)
