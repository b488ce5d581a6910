"""What every kind of delivery (webhooks, sinks) shares: subscriptions kept in a store table,
changed under a lock, followed by one task each while :meth:`Deliveries.run` runs, their
progress saved every ``save_every_s`` and once more when it stops.

A subscription's cursor is the seq up to which every event it wants was delivered (a broker or
a receiver acknowledged it). Progress (cursor, failing, last error) is kept in memory and
written to the table in one transaction at most every ``save_every_s``, so a restart resumes
from the cursor saved last: what was delivered after it is delivered again, under the same
message id. A subscription whose event is still not delivered ``retry_budget_s`` after its first
failure is *failing*: its cursor stays, nothing is skipped, and it keeps trying.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

import msgspec
import trio

from stockade.api.logs import log_event
from stockade.engine.engine import Engine
from stockade.engine.models import Event
from stockade.errors import EngineClosed, FeedGone, StoreUnavailable
from stockade.persistence.subscriptions import Progress, SubscriptionTable

__all__ = ["Deliveries", "Followed", "RetryOptions", "jittered"]

R = TypeVar("R", bound=msgspec.Struct)
S = TypeVar("S", bound="Followed[Any]")


class RetryOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How every kind of delivery retries and saves its progress; times in seconds. A failed
    attempt is retried after ``backoff_s``, doubling up to ``max_backoff_s`` (jittered);
    ``retry_budget_s`` of failures make a subscription failing; progress is saved every
    ``save_every_s``, and for at most ``final_save_s`` when deliveries stop (a database that
    is down)."""

    backoff_s: float = 1.0
    max_backoff_s: float = 600.0
    retry_budget_s: float = 3600.0
    save_every_s: float = 1.0
    final_save_s: float = 5.0


def jittered(delay: float, most: float) -> float:
    """A wait of ``delay`` (at most ``most``), drawn between half and one and a half times it."""
    return min(delay, most) * random.uniform(0.5, 1.5)


class Followed(Generic[R]):
    """A subscription (its ``record``: a row of its table) and where its deliveries stand."""

    def __init__(self, record: R) -> None:
        self.record = record
        self.id: str = getattr(record, "id")  # noqa: B009
        types: tuple[str, ...] | None = getattr(record, "types")  # noqa: B009
        self.types = types
        self.cursor: int = getattr(record, "delivered_seq")  # noqa: B009
        self.failing: bool = getattr(record, "failing")  # noqa: B009
        self.last_error: str | None = getattr(record, "last_error")  # noqa: B009
        self.last_error_at: float | None = getattr(record, "last_error_at")  # noqa: B009
        self.dirty = False  # progress not saved yet
        self.scope = trio.CancelScope()
        self.first_failure: float | None = None  # (trio time) of the failures since a success

    def progress(self) -> Progress:
        return Progress(self.id, self.cursor, self.failing, self.last_error, self.last_error_at)

    def failed(self, error: str, at: float) -> None:
        self.last_error = error
        self.last_error_at = at
        self.dirty = True

    def advanced(self, cursor: int) -> None:
        """Every wanted event up to ``cursor`` was delivered."""
        self.cursor = cursor
        self.dirty = True


class Deliveries(Generic[S, R]):
    """Subscriptions kept in ``table``, each followed from :meth:`run` by :meth:`_follow`.

    The methods that change subscriptions take a lock, read the table on first use, and may
    raise StoreUnavailable (the table cannot be written now: nothing changed). They work
    whether or not :meth:`run` runs; deliveries happen only while it does. Subclasses say how
    a record becomes a subscription (:meth:`_followed`), what runs around the deliveries
    (:meth:`_running`), how many events one attempt carries (:meth:`_batch`) and how they are
    delivered (:meth:`_deliver`)."""

    #: What the logs call one (``webhook``, ``sink``).
    kind = "subscription"

    def __init__(
        self, engine: Engine, table: SubscriptionTable[R], retry: RetryOptions, *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.table = table
        self.retry = retry
        self.wall_clock = wall_clock
        self._subscriptions: dict[str, S] = {}
        self._loaded = False
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None

    # -- what subclasses say --------------------------------------------------------------------

    def _followed(self, record: R) -> S:
        raise NotImplementedError

    def _running(self) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    def _batch(self, subscription: S) -> int:
        raise NotImplementedError

    async def _deliver(self, subscription: S, events: list[Event]) -> None:
        """Deliver ``events`` (in seq order) until they are, retrying as they fail (see
        :meth:`attempt_failed`). Cancellable."""
        raise NotImplementedError

    # -- the API's side -----------------------------------------------------------------------

    async def _load(self) -> None:
        if not self._loaded:
            for record in await self.table.all():
                subscription = self._followed(record)
                self._subscriptions[subscription.id] = subscription
            self._loaded = True

    async def _replace(
        self, subscription_id: str, record_for: Callable[[S | None, float], R]
    ) -> tuple[S, bool]:
        """Write the record ``record_for(old, now)`` makes for ``subscription_id`` (``old``: its
        subscription now, None if new) and follow it instead of the old one; return it and
        whether it is new."""
        async with self._lock:
            await self._load()
            old = self._subscriptions.get(subscription_id)
            record = record_for(old, self.wall_clock())
            await self.table.put(record)
            if old is not None:
                old.scope.cancel()  # what was in flight is cut short: it is sent again
            subscription = self._subscriptions[subscription_id] = self._followed(record)
            self._start(subscription)
        return subscription, old is None

    def _new_cursor(self) -> int:
        """Where a new subscription starts: after the newest event. Raises FeedGone when the
        engine keeps no change feed."""
        head = self.engine.feed_head
        if head is None:
            raise FeedGone(f"this server keeps no change feed to deliver to a {self.kind}")
        return head

    async def get(self, subscription_id: str) -> S | None:
        async with self._lock:
            await self._load()
            return self._subscriptions.get(subscription_id)

    async def all(self) -> list[S]:
        """Every subscription, in id order."""
        async with self._lock:
            await self._load()
            return [self._subscriptions[key] for key in sorted(self._subscriptions)]

    async def delete(self, subscription_id: str) -> S | None:
        """Remove the subscription and stop its deliveries; None if there is none."""
        async with self._lock:
            await self._load()
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None:
                return None
            await self.table.delete(subscription_id)
            del self._subscriptions[subscription_id]
            subscription.scope.cancel()
            return subscription

    def subscriptions(self) -> list[S]:
        """The subscriptions read so far, without waiting for the table. Never blocks."""
        return list(self._subscriptions.values())

    def backlogs(self) -> dict[str, int]:
        """Each subscription's backlog: the events committed after its cursor."""
        head = self.engine.feed_head or 0
        return {k: max(head - s.cursor, 0) for k, s in self._subscriptions.items()}

    # -- delivering ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver every subscription's events until cancelled, saving progress every
        ``save_every_s``; then save it once more (for at most ``final_save_s``). The table is
        read before ``task_status.started()``: errors reading it propagate."""
        try:
            async with self._running(), trio.open_nursery() as nursery:
                async with self._lock:
                    await self._load()
                    self._nursery = nursery
                    for subscription in self._subscriptions.values():
                        self._start(subscription)
                nursery.start_soon(self._save_every)
                task_status.started()
        finally:
            self._nursery = None
            with trio.move_on_after(self.retry.final_save_s, shield=True):
                await self.save()

    def _start(self, subscription: S) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._follow_until_closed, subscription)

    async def _follow_until_closed(self, subscription: S) -> None:
        with subscription.scope:
            try:
                await self._follow(subscription)
            except EngineClosed:
                return

    async def _follow(self, subscription: S) -> None:
        """Deliver ``subscription``'s events from its cursor, a batch at a time, until it is
        replaced or deleted (its scope is cancelled), delivery stops, or the engine closes
        (EngineClosed). A feed that cannot be read now is read again after a backoff."""
        retry = self.retry
        delay = retry.backoff_s
        while True:
            try:
                reader = self.engine.events(subscription.cursor, subscription.types)
                while True:
                    events = await reader.batch(self._batch(subscription))
                    await self._deliver(subscription, events)
                    subscription.advanced(reader.cursor)
                    delay = retry.backoff_s
            except (FeedGone, StoreUnavailable) as exc:
                if isinstance(exc, FeedGone) and self.pruned(subscription, exc):
                    continue
                subscription.failed(str(exc), self.wall_clock())
                await trio.sleep(jittered(delay, retry.max_backoff_s))
                delay = min(delay * 2, retry.max_backoff_s)

    async def _save_every(self) -> None:
        while True:
            await trio.sleep(self.retry.save_every_s)
            await self.save()

    async def save(self) -> None:
        """Write the progress not saved yet, in one transaction. A store that cannot be
        reached keeps it for the next save. Cancellable (it is then saved next time)."""
        dirty = [s for s in self._subscriptions.values() if s.dirty]
        if not dirty:
            await trio.lowlevel.checkpoint()
            return
        for subscription in dirty:
            subscription.dirty = False
        try:
            await self.table.save_progress([s.progress() for s in dirty])
        except BaseException as exc:
            for subscription in dirty:
                subscription.dirty = True
            if not isinstance(exc, StoreUnavailable):
                raise
            log_event(f"{self.kind}_progress_not_saved", error=str(exc))

    def attempt_failed(self, subscription: S, error: str) -> None:
        """An attempt to deliver failed with ``error``; ``subscription`` is failing once its
        failures have lasted ``retry_budget_s``."""
        retry_budget_s = self.retry.retry_budget_s
        subscription.failed(error, self.wall_clock())
        now = trio.current_time()
        if subscription.first_failure is None:
            subscription.first_failure = now
        if not subscription.failing and now - subscription.first_failure >= retry_budget_s:
            subscription.failing = True
            log_event(f"{self.kind}_failing", **{self.kind: subscription.id},
                      cursor=subscription.cursor, error=error)  # fmt: skip

    def attempt_succeeded(self, subscription: S) -> None:
        """An attempt delivered what it carried: ``subscription`` is not failing any more."""
        subscription.first_failure = None
        if subscription.failing:
            subscription.failing = False
            subscription.dirty = True
            log_event(f"{self.kind}_recovered", **{self.kind: subscription.id})

    def pruned(self, subscription: S, exc: FeedGone) -> bool:
        """Move ``subscription`` past events pruned before it could deliver them (``exc``
        says so), saying so in its last error; False if ``exc`` is about something else."""
        if exc.first <= subscription.cursor + 1:
            return False
        error = f"events {subscription.cursor + 1}..{exc.first - 1} were pruned "
        error += "before they could be delivered"
        log_event(f"{self.kind}_events_pruned", **{self.kind: subscription.id},
                  first=subscription.cursor + 1, last=exc.first - 1)  # fmt: skip
        subscription.advanced(exc.first - 1)
        subscription.failed(error, self.wall_clock())
        return True
