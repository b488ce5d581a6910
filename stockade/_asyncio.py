"""An asyncio loop on a thread of its own, for the asyncio-only clients stockade drives from
trio: asyncpg (the PostgreSQL store) and the brokers' clients (the sinks of
:mod:`stockade.outbound`). Each user keeps one :class:`AsyncioThread` and hands it coroutines;
trio waits for each through its token, without tying up a worker thread. asyncio appears only
here and in the modules whose coroutines run on such a loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import trio

__all__ = ["AsyncioThread"]

T = TypeVar("T")


def _swallow(future: Any) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as lost


async def _cancel_the_rest() -> None:
    """Cancel every other task on this loop and wait (up to 2 s) for them to end."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=2)


class AsyncioThread:
    """An asyncio loop on a daemon thread called ``name``; :meth:`run` awaits a coroutine on it
    from trio."""

    def __init__(self, name: str = "stockade-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """``await fn(*args)`` on the loop; its result or exception. Cancelling it cancels
        the coroutine (its outcome is dropped)."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        future.add_done_callback(lambda _: token.run_sync_soon(done.set))
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()  # its outcome is dropped: the caller retries or is shutting down
            future.add_done_callback(_swallow)
            raise
        return future.result()

    def close(self) -> None:
        """Cancel what still runs on the loop (waiting up to 2 s for it to end), stop the loop
        and wait (up to 5 s) for its thread. Blocks."""
        if self._thread.is_alive():
            ending = asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self.loop)
            try:
                ending.result(timeout=3)
            except Exception:
                ending.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()
