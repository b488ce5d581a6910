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
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

from stockade.embedding.thread import EngineThread
from stockade.engine.models import EngineStatistics, Order, StockLevel
from stockade.engine.validation import Lines

__all__ = ["AsyncioEngine", "open_asyncio_engine"]


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


class _LoopReply:
    __slots__ = ("future", "outbox")

    def __init__(self, outbox: _Outbox) -> None:
        self.outbox = outbox
        self.future: asyncio.Future[Any] = outbox.loop.create_future()

    def settle(self, result: Any, error: BaseException | None) -> None:
        self.outbox.put(self.future, result, error)


class AsyncioEngine:
    """Same names, arguments, results and errors as :class:`stockade.Engine`, awaitable from
    asyncio. Safe to share between tasks and loops."""

    def __init__(self, thread: EngineThread) -> None:
        self.thread = thread
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
            weakref.WeakKeyDictionary()
        )

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox(loop)
        reply = _LoopReply(outbox)
        self.thread.enqueue(method, args, kwargs, reply)
        return await reply.future

    async def set_stock(self, sku: str, on_hand: int) -> StockLevel:
        return await self._call("set_stock", sku, on_hand)  # type: ignore[no-any-return]

    async def adjust_stock(self, sku: str, delta: int, reason: str = "") -> StockLevel:
        return await self._call("adjust_stock", sku, delta, reason)  # type: ignore[no-any-return]

    async def place_order(
        self,
        lines: Lines,
        *,
        hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        return await self._call(  # type: ignore[no-any-return]
            "place_order", lines, hold_for=hold_for, idempotency_key=idempotency_key
        )

    async def confirm(self, order_id: str) -> Order:
        return await self._call("confirm", order_id)  # type: ignore[no-any-return]

    async def cancel(self, order_id: str) -> Order:
        return await self._call("cancel", order_id)  # type: ignore[no-any-return]

    async def get_order(self, order_id: str) -> Order:
        return await self._call("get_order", order_id)  # type: ignore[no-any-return]

    async def stock(self, sku: str) -> StockLevel:
        return await self._call("stock", sku)  # type: ignore[no-any-return]

    async def statistics(self) -> EngineStatistics:
        return await asyncio.to_thread(self.thread.statistics)


@asynccontextmanager
async def open_asyncio_engine(
    database: str | None = None, **options: Any
) -> AsyncIterator[AsyncioEngine]:
    """From asyncio: run an engine on its own thread for the ``async with`` block::

        async with stockade.open_asyncio_engine("sqlite:///stock.db") as engine:
            order = await engine.place_order({"sku-1": 1})

    Starting and stopping (which commits the journal) run off the event loop, so the loop keeps
    serving meanwhile. ``options`` are :func:`stockade.open_engine`'s.
    """
    thread = EngineThread(database, **options)
    await asyncio.to_thread(thread.start)
    try:
        yield AsyncioEngine(thread)
    finally:
        await asyncio.to_thread(thread.stop)
