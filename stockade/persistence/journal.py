"""The write-behind journal: one writer task commits the engine's events, in order, in batches.

The engine appends events synchronously; the writer takes everything buffered whenever it is
free and commits it as one batch (group commit: one commit serves every caller that arrived
while the previous one ran). Batches carry sequence numbers so a store can refuse to apply one
twice. In ``durable`` mode a caller's answer waits for the batch holding its change; in ``fast``
mode it does not, and a crash may lose what was buffered (at most ``max_buffered`` events, or
what arrived during one commit).

A store that is unreachable raises :class:`~stockade.errors.StoreUnavailable`; the writer then
retries the same batch with exponential backoff and jitter, forever, while ``healthy`` reports
False. Any other exception from a store (:class:`~stockade.errors.CorruptStore`,
:class:`~stockade.errors.StoreLost`, a bug) stops the journal loudly.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import deque
from contextvars import ContextVar
from typing import Literal, NamedTuple, Protocol

import msgspec
import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from stockade.engine.changes import Change
from stockade.engine.feed import EventRow, FeedHub
from stockade.engine.models import Event as FeedEvent
from stockade.engine.models import JournalStatistics, Movement, Order
from stockade.engine.storage import OrderQuery, Snapshot
from stockade.errors import CorruptStore, InvalidRequest, Overloaded
from stockade.errors import StoreUnavailable as StoreUnavailable  # its home before errors.py

__all__ = ["Batch", "CommitTimes", "Durability", "Journal", "Store", "is_new_batch", "last_commit"]

Durability = Literal["durable", "fast"]


class CommitTimes(NamedTuple):
    """When the batch that made a caller's change durable was committed: wall time in
    nanoseconds since the epoch, from the first attempt's start to the commit's end, and how
    many events the batch held."""

    start_ns: int
    end_ns: int
    events: int


#: Set, in the task that waited, by a durable wait (:meth:`Journal.wait_durable`,
#: :meth:`Journal.flush`) that a commit ended, when the journal records commit times
#: (``record_commits``): the batch's :class:`CommitTimes`. Never set otherwise; a reader resets
#: it before the call it wants to see.
last_commit: ContextVar[CommitTimes | None] = ContextVar("stockade_last_commit", default=None)


class Batch(msgspec.Struct, frozen=True, gc=False):
    """Events ``first_seq..last_seq`` (inclusive), to commit in one transaction."""

    first_seq: int
    last_seq: int
    events: list[Change]


def is_new_batch(first_seq: int, last_seq: int, committed_seq: int) -> bool:
    """Whether a store that has committed up to ``committed_seq`` must apply the batch
    ``first_seq..last_seq``: True when it comes next, False when it was already committed (a
    retried commit whose first attempt landed). Raises CorruptStore for a batch that leaves a
    gap or overlaps what was committed: the store and the journal disagree."""
    if last_seq <= committed_seq:
        return False
    if first_seq != committed_seq + 1:
        raise CorruptStore(
            f"batch {first_seq}..{last_seq} does not follow the last committed event "
            f"{committed_seq}"
        )
    return True


class Store(Protocol):
    """Where batches end up. ``commit`` must apply a batch atomically, with the change feed's
    events it yields (see :mod:`stockade.persistence.outbox`; it returns them, none if the
    store keeps no feed), and skip one whose ``last_seq`` it has already applied.
    ``load(since)`` reads what the engine starts from:
    every product, location and channel, the open holds, and the orders and key uses after
    ``since`` (UNIX seconds: the start of the idempotency window). ``keeps_history`` says
    whether the reads below find what was committed (a store that keeps nothing answers
    nothing); they may block on the database and may be cancelled."""

    keeps_history: bool

    async def load(self, since: float) -> Snapshot: ...

    async def commit(self, batch: Batch) -> list[EventRow]: ...

    async def aclose(self) -> None: ...

    async def order(self, order_id: str) -> Order | None: ...

    async def orders(self, query: OrderQuery) -> list[Order]: ...

    async def movements(self, sku: str, after: int | None, limit: int) -> list[Movement]: ...

    async def events(
        self, after: int, limit: int, types: tuple[str, ...] | None = None
    ) -> list[FeedEvent]: ...

    async def feed_bounds(self) -> tuple[int, int]: ...

    async def prune_events(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` of the oldest events older than ``before`` (UNIX seconds);
        return how many. A SQL store keeps its events in pages (one commit's events, up to
        :data:`~stockade.persistence.pages.PAGE_SIZE` a page) and counts and deletes whole
        pages: one goes once its newest event is older than ``before``."""
        ...


class _Durable:
    __slots__ = ("seq", "task")

    def __init__(self, seq: int, task: Task | None) -> None:
        self.seq = seq
        self.task = task


class Journal:
    """Buffers events and commits them through ``store`` from :meth:`run`.

    ``max_buffered`` bounds the events not yet committed: past it, :meth:`admit` raises
    Overloaded so new work is refused rather than queued without bound. ``max_batch`` bounds
    one transaction. ``record_commits`` hands every task that waits for a commit the batch's
    :class:`CommitTimes` in :data:`last_commit` (for tracing; off, it costs nothing).
    """

    def __init__(
        self,
        store: Store,
        *,
        durability: Durability = "durable",
        max_buffered: int = 100_000,
        max_batch: int = 10_000,
        start_seq: int = 0,
        feed: FeedHub | None = None,
        record_commits: bool = False,
    ) -> None:
        if durability not in ("durable", "fast"):
            raise InvalidRequest(f"durability must be 'durable' or 'fast', not {durability!r}")
        self.store = store
        self.feed = feed
        self.events_written = 0
        self.durability: Durability = durability
        self._fast = durability == "fast"
        self.max_buffered = max_buffered
        self.max_batch = max_batch
        self._buffer: list[Change] = []
        self._seq = start_seq
        self._committed = start_seq
        self._claimed = 0
        self._waiting: deque[_Durable] = deque()
        self._writer: Task | None = None
        self._writer_parked = False
        self._closing = False
        self._stopped = trio.Event()
        self.healthy = True
        self.batches = 0
        self.events_committed = 0
        self.store_errors = 0
        self.last_batch_size = 0
        self.commit_ms_total = 0  # time spent in successful commits, for flush latency
        self.last_error: str | None = None
        self.record_commits = record_commits

    # -- the engine's side --------------------------------------------------------------------

    def admit(self) -> None:
        # Everything not yet committed counts, including a batch stuck in a failing commit,
        # and so do the slots claimed by callers that will append.
        if self._seq - self._committed + self._claimed >= self.max_buffered:
            raise Overloaded("the journal is full (is the database down?); retry later")

    def claim_slot(self) -> None:
        self.admit()
        self._claimed += 1

    def free_slot(self) -> None:
        self._claimed -= 1

    def append(self, events: tuple[Change, ...]) -> int:
        self._buffer.extend(events)
        self._seq += len(events)
        if self._writer_parked:
            self._writer_parked = False
            assert self._writer is not None
            reschedule(self._writer)
        return self._seq

    def is_durable(self, seq: int) -> bool:
        return self._fast or seq <= self._committed

    async def wait_durable(self, seq: int) -> None:
        """Return once event ``seq`` is committed (``durable``) or at once (``fast``).
        Cancellable: the change still commits, only the caller stops waiting."""
        if not self.is_durable(seq):
            await self._wait_committed(seq)

    async def flush(self) -> None:
        """Return once everything appended so far is committed, in either durability mode.
        Cancellable."""
        if self._seq <= self._committed:
            await trio.lowlevel.checkpoint()
        else:
            await self._wait_committed(self._seq)

    async def _wait_committed(self, seq: int) -> None:
        entry = _Durable(seq, current_task())
        self._waiting.append(entry)

        def abort(_: object) -> Abort:
            entry.task = None
            return Abort.SUCCEEDED

        times = await wait_task_rescheduled(abort)
        if times is not None:  # only when recording commits
            last_commit.set(times)

    @property
    def committed_seq(self) -> int:
        return self._committed

    @property
    def appended_seq(self) -> int:
        return self._seq

    @property
    def buffered(self) -> int:
        """Events appended and not yet committed."""
        return self._seq - self._committed

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            buffered=self.buffered,
            batches=self.batches,
            events_committed=self.events_committed,
            last_batch_size=self.last_batch_size,
            commit_ms_total=self.commit_ms_total,
            store_errors=self.store_errors,
            healthy=self.healthy,
            events_written=self.events_written,
        )

    # -- the writer ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until :meth:`aclose` and the buffer is empty."""
        self._writer = current_task()
        task_status.started()
        try:
            while True:
                if not self._buffer:
                    if self._closing:
                        return
                    self._writer_parked = True
                    await wait_task_rescheduled(self._unpark)
                    continue
                events = self._buffer[: self.max_batch]
                del self._buffer[: self.max_batch]
                first = self._committed + 1
                batch = Batch(first, first + len(events) - 1, events)
                started = trio.current_time()
                started_ns = time.time_ns() if self.record_commits else 0
                errors = self.store_errors
                published = await self._commit(batch)
                self.commit_ms_total += round((trio.current_time() - started) * 1000)
                self._committed = batch.last_seq
                self.batches += 1
                self.events_committed += len(events)
                self.last_batch_size = len(events)
                if self.record_commits:
                    self._wake(batch.last_seq, CommitTimes(started_ns, time.time_ns(), len(events)))
                else:
                    self._wake(batch.last_seq)
                if published:
                    self.events_written += len(published)
                    if self.feed is not None:
                        self.feed.publish(published)
                elif self.store_errors != errors and self.feed is not None:
                    await self._catch_up_feed()
        finally:
            self._writer = None
            self._writer_parked = False
            self._stopped.set()

    def _unpark(self, _: object) -> Abort:
        self._writer_parked = False
        return Abort.SUCCEEDED

    async def _commit(self, batch: Batch) -> list[EventRow]:
        delay = 0.05
        while True:
            try:
                published = await self.store.commit(batch)
            except StoreUnavailable as exc:
                self.healthy = False
                self.store_errors += 1
                self.last_error = str(exc)
                await trio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)
            else:
                self.healthy = True
                return published

    async def _catch_up_feed(self) -> None:
        """A retried commit yielded no events: the batch may have landed in an attempt whose
        answer was lost, with its events in the store only. Move the hub's head to the
        store's, so live readers read them from there now rather than at the next commit.

        The batch is committed whatever this read does, so no failure of it may stop the
        writer: one (a store unreachable again, a reader pool that cannot connect) is
        recorded in ``last_error`` and leaves the catching up to the next commit."""
        assert self.feed is not None
        try:
            _, last = await self.store.feed_bounds()
        except Exception as exc:  # recorded (trio.Cancelled is no Exception: it propagates)
            self.last_error = f"reading the feed's head after a retried commit: {exc!r}"
            return
        self.feed.skip_to(last)

    def _wake(self, committed: int, times: CommitTimes | None = None) -> None:
        """Wake the callers waiting for ``committed`` or less, handing each ``times``."""
        waiting = self._waiting
        while waiting and waiting[0].seq <= committed:
            task = waiting.popleft().task
            if task is not None:
                if times is None:
                    reschedule(task)
                else:  # an outcome is unwrapped once: one each
                    reschedule(task, outcome.Value(times))

    async def prune_events(
        self, retention_s: float, *, every_s: float = 60.0, chunk: int = 1000,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:  # fmt: skip
        """Every ``every_s``, delete the change feed's events older than ``retention_s``, in
        chunks of ``chunk`` events (a SQL store's: pages of events), so a commit never waits
        long behind one. A store that cannot be reached is tried again next time. Runs until
        cancelled."""
        task_status.started()
        while True:
            cutoff = time.time() - retention_s
            with contextlib.suppress(StoreUnavailable):
                while await self.store.prune_events(cutoff, chunk) == chunk:
                    await trio.lowlevel.checkpoint()
            await trio.sleep(every_s)

    async def aclose(self) -> None:
        """Let the writer commit everything appended so far, then stop it. Blocks until then
        (for as long as the store stays unreachable); cancel it to give up."""
        self._closing = True
        if self._writer_parked:
            self._writer_parked = False
            assert self._writer is not None
            reschedule(self._writer)
        await self._stopped.wait()
