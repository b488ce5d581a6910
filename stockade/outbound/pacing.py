"""Pacing deliveries: while the process has other work (orders arriving), deliveries take at
most a share of its time, so a burst of orders is not slowed down by the deliveries of its own
events. Used by every kind of delivery in :mod:`stockade.outbound`."""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["Pacer", "other_tasks_runnable"]


def other_tasks_runnable() -> bool:
    """Whether other trio tasks wait in the run queue (the process has other work). Never
    blocks."""
    return trio.lowlevel.current_statistics().tasks_runnable > 0


class Pacer:
    """Keeps deliveries, all together, to ``share`` of the process's time while it has other
    work to do (``busy()``; by default: other tasks wait in trio's run queue), so a burst of
    orders is not slowed down by the deliveries of its own events; with nothing else to do
    they go at full speed.

    While busy, each attempt is charged what an attempt costs when the process is otherwise
    idle (learnt from such attempts; its own wall time if less: while busy, other tasks run
    between an attempt's steps and its wall time says little about its cost), and the next
    attempt waits until the charge is paid off at ``share``, checking every 10 ms whether the
    process is still busy. Under a sustained load the webhooks fall behind, and catch up when
    it eases: their backlog is in the store, not in memory."""

    def __init__(self, share: float, busy: Callable[[], bool] | None = None) -> None:
        self.share = share
        self.busy = other_tasks_runnable if busy is None else busy
        self.cost_s = 0.001  # an attempt's time while the process is otherwise idle (EWMA)
        self._free_at = 0.0  # (trio time) while busy, no attempt starts before this

    def wait_s(self, now: float, busy: bool) -> float:
        """How long an attempt about to start waits, if the process stays as busy."""
        return max(self._free_at - now, 0.0) if busy and self.share < 1 else 0.0

    def spent(self, started: float, ended: float, idle: bool) -> None:
        """An attempt ran from ``started`` to ``ended``; ``idle``: nothing else waited to run
        when it started."""
        took = ended - started
        if idle:
            self.cost_s += (took - self.cost_s) / 8
        if self.share < 1:
            charge = min(took, self.cost_s) * (1 / self.share - 1)
            self._free_at = max(self._free_at, ended) + charge

    async def turn(self) -> bool:
        """Wait for an attempt's turn (see the class docstring); whether the process was idle
        when it came. Cancellable."""
        while True:
            busy = self.busy()
            wait = self.wait_s(trio.current_time(), busy)
            if not wait:
                await trio.lowlevel.checkpoint()
                return not busy
            await trio.sleep(min(wait, 0.01))
