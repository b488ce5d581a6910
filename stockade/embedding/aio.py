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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import trio

from stockade._open import DEFAULT_EVENT_RETENTION, DEFAULT_JOURNAL_SIZE, DEFAULT_SHUTDOWN_GRACE
from stockade.embedding.thread import EngineThread
from stockade.engine.allocation import Strategy
from stockade.engine.core import DEFAULT_KEY_TTL, DEFAULT_MAILBOX_SIZE, DEFAULT_MAX_HOLD_LIFETIME
from stockade.engine.engine import Engine
from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.models import (
    Channel,
    EngineStatistics,
    Event,
    Location,
    LocationLevel,
    Movement,
    Order,
    OrderStatus,
    StockLevel,
)
from stockade.engine.validation import DEFAULT_MAX_HOLD, Lines
from stockade.persistence.journal import Durability, Store

__all__ = ["AsyncioEngine", "open_asyncio_engine"]

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


class AsyncioEngine:
    """Same names, arguments, results and errors as :class:`stockade.Engine`, awaitable from
    asyncio. Safe to share between tasks and loops. A call never blocks its loop; cancelling
    the awaiting task only stops it waiting."""

    def __init__(self, thread: EngineThread) -> None:
        self.thread = thread
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
            weakref.WeakKeyDictionary()
        )

    async def _call(
        self,
        fn: Callable[Concatenate[Engine, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        loop = asyncio.get_running_loop()
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox(loop)
        reply: _LoopReply[T] = _LoopReply(outbox)
        self.thread.enqueue(fn, args, kwargs, reply)
        return await reply.future

    async def set_stock(
        self, sku: str, on_hand: int, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        return await self._call(Engine.set_stock, sku, on_hand, location)

    async def adjust_stock(
        self, sku: str, delta: int, reason: str = "", location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        return await self._call(Engine.adjust_stock, sku, delta, reason, location)

    async def place_order(
        self,
        lines: Lines,
        *,
        hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None,
        location: str | None = None,
        channel: str | None = None,
    ) -> Order:
        return await self._call(
            Engine.place_order,
            lines,
            hold_for=hold_for,
            idempotency_key=idempotency_key,
            location=location,
            channel=channel,
        )

    async def change_order(
        self, order_id: str, lines: Lines, *, idempotency_key: str | None = None
    ) -> Order:
        return await self._call(
            Engine.change_order, order_id, lines, idempotency_key=idempotency_key
        )

    async def extend(
        self, order_id: str, hold_for: timedelta | float, *, idempotency_key: str | None = None
    ) -> Order:
        return await self._call(Engine.extend, order_id, hold_for, idempotency_key=idempotency_key)

    async def confirm(self, order_id: str) -> Order:
        return await self._call(Engine.confirm, order_id)

    async def cancel(self, order_id: str, *, allow_return: bool = True) -> Order:
        return await self._call(Engine.cancel, order_id, allow_return=allow_return)

    async def get_order(self, order_id: str) -> Order:
        return await self._call(Engine.get_order, order_id)

    async def stock(self, sku: str, channel: str | None = None) -> StockLevel:
        return await self._call(Engine.stock, sku, channel)

    async def stock_by_location(self, sku: str) -> list[LocationLevel]:
        return await self._call(Engine.stock_by_location, sku)

    async def transfer(
        self, sku: str, qty: int, source: str, destination: str, reason: str = ""
    ) -> list[LocationLevel]:
        return await self._call(Engine.transfer, sku, qty, source, destination, reason)

    async def set_location(
        self, id: str, name: str = "", priority: int = 0, active: bool = True
    ) -> Location:
        return await self._call(Engine.set_location, id, name, priority, active)

    async def update_location(
        self, id: str, *, name: str | None = None, priority: int | None = None,
        active: bool | None = None,
    ) -> Location:  # fmt: skip
        return await self._call(
            Engine.update_location, id, name=name, priority=priority, active=active
        )

    async def set_channel(self, id: str, locations: list[str]) -> Channel:
        return await self._call(Engine.set_channel, id, locations)

    async def list_orders(
        self,
        status: OrderStatus | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Order]:
        return await self._call(
            Engine.list_orders, status, created_after, created_before, after, limit
        )

    async def movements(
        self, sku: str, after: int | None = None, limit: int = 100
    ) -> list[Movement]:
        return await self._call(Engine.movements, sku, after, limit)

    async def event_page(
        self, after: int = 0, limit: int = 100, types: list[str] | None = None
    ) -> tuple[list[Event], int]:
        return await self._call(Engine.event_page, after, limit, types)

    async def statistics(self) -> EngineStatistics:
        return await asyncio.to_thread(self.thread.statistics)


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
    thread = EngineThread(
        database,
        clock=clock,
        store=store,
        durability=durability,
        mailbox_size=mailbox_size,
        journal_size=journal_size,
        idempotency_ttl=idempotency_ttl,
        max_hold=max_hold,
        max_hold_lifetime=max_hold_lifetime,
        allocation=allocation,
        feed=feed,
        event_retention=event_retention,
        shutdown_grace=shutdown_grace,
        wall_clock=wall_clock,
    )
    await asyncio.to_thread(thread.start)
    try:
        yield AsyncioEngine(thread)
    finally:
        await asyncio.to_thread(thread.stop)
