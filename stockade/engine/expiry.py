"""Hold expiry: one task sleeping until the earliest deadline, on trio's clock.

Deadlines are kept in a heap as UNIX seconds; the engine's clock maps them onto trio's clock, so
tests drive expiry with ``trio.testing.MockClock`` and no real sleep. Entries for orders that were
confirmed or cancelled meanwhile are simply found not lapsed and dropped.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import trio

__all__ = ["ExpiryScheduler"]


class ExpiryScheduler:
    """Calls ``expire(order_id, now)`` for each hold once its deadline has come.

    ``to_trio`` converts a UNIX time to trio's clock; ``clock`` gives the current UNIX time.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        to_trio: Callable[[float], float],
        expire: Callable[[str, float], None],
    ) -> None:
        self._clock = clock
        self._to_trio = to_trio
        self._expire = expire
        self._heap: list[tuple[float, str]] = []
        self._sleep: trio.CancelScope | None = None
        self._stopped = trio.CancelScope()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, deadline: float, order_id: str) -> None:
        """Schedule a check of ``order_id`` at ``deadline`` (UNIX seconds). Never blocks."""
        heapq.heappush(self._heap, (deadline, order_id))
        sleep = self._sleep
        if sleep is not None and self._heap[0][1] is order_id:  # the new earliest deadline
            sleep.deadline = min(sleep.deadline, self._to_trio(deadline))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Expire holds at their deadlines until :meth:`stop` or cancelled."""
        task_status.started()
        with self._stopped:
            await self._loop()

    def stop(self) -> None:
        """Stop expiring holds; :meth:`run` returns."""
        self._stopped.cancel()

    async def _loop(self) -> None:
        heap = self._heap
        while True:
            deadline = self._to_trio(heap[0][0]) if heap else math.inf
            with trio.CancelScope(deadline=deadline) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            # Compare on trio's clock, as the sleep did, so float rounding between the two
            # clocks can never leave a due deadline behind (and the loop spinning on it).
            now_trio = trio.current_time()
            while heap and self._to_trio(heap[0][0]) <= now_trio:
                deadline, order_id = heapq.heappop(heap)
                self._expire(order_id, max(self._clock(), deadline))
