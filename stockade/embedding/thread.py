"""An engine on a thread of its own, for programs that do not run trio.

:class:`EngineThread` runs :func:`stockade.open_engine` under ``trio.run`` in a dedicated thread.
Host threads and event loops hand it calls through the thread's trio token: each call becomes a
task in the engine's nursery, and its outcome comes back on a ``concurrent.futures.Future``.
:class:`BlockingEngine` waits on that future; the asyncio handle in
:mod:`stockade.embedding.aio` awaits it.

Giving up on a call (a timeout, a cancelled asyncio task, an abandoned thread) only abandons the
future: the engine finishes the call. An order is therefore either placed in full or not at
all, never half-taken; a caller that gave up can find out which by retrying with the same
idempotency key.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, TypeVarTuple

import trio

from stockade._open import (
    DEFAULT_EVENT_RETENTION,
    DEFAULT_JOURNAL_SIZE,
    DEFAULT_SHUTDOWN_GRACE,
    EngineOptions,
    open_engine_and_store,
)
from stockade.engine.allocation import Strategy
from stockade.engine.core import DEFAULT_KEY_TTL, DEFAULT_MAILBOX_SIZE, DEFAULT_MAX_HOLD_LIFETIME
from stockade.engine.engine import Engine
from stockade.engine.models import EngineStatistics, Event
from stockade.engine.validation import DEFAULT_MAX_HOLD
from stockade.errors import EngineClosed, InvalidRequest
from stockade.persistence.journal import Durability, Store
from stockade.protocol.calls import CallBase, EventsCall
from stockade.protocol.dispatch import dispatch, next_item, start_stream
from stockade.protocol.surface import BlockingEngineCalls

__all__ = [
    "BlockingEngine",
    "BlockingEvents",
    "EngineThread",
    "FutureReply",
    "Reply",
    "ThreadReply",
    "run_in_thread",
]

P = ParamSpec("P")
T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
Ts = TypeVarTuple("Ts")


class Reply(Protocol[T_contra]):
    """Where a call's outcome goes; ``settle`` runs on the engine thread and must not block.
    ``result`` means nothing when ``error`` is not None."""

    def settle(self, result: T_contra, error: BaseException | None) -> None: ...


#: One call waiting in the inbox: ``(fn, args, kwargs, reply)``, a tuple: cheaper
#: to make than an object, and one is made per call.
_Call = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], Mapping[str, Any], Reply[Any]]


class EngineThread:
    """Owns a thread running an engine. The keyword arguments are :func:`stockade.open_engine`'s,
    and ``clock`` is passed to ``trio.run`` (tests use ``trio.testing.MockClock``).

    Start it with :meth:`start` (or use :func:`run_in_thread`); :meth:`stop` closes the engine,
    which answers the calls in flight and commits the journal, and joins the thread. An error
    that stops the engine thread is raised by :meth:`stop` and is the cause of the
    EngineClosed that later calls get.

    Calls name an engine method (or any coroutine function taking the engine first) and its
    arguments, typed like ``trio.from_thread.run``: ``thread.submit(Engine.stock, "sku-1")``
    is a ``Future[StockLevel]``. The engine object itself stays on its thread.
    """

    def __init__(
        self,
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
    ) -> None:
        self._setup(database, clock, store, durability, EngineOptions.from_arguments(locals()))

    @classmethod
    def with_options(
        cls,
        database: str | None,
        options: EngineOptions,
        *,
        clock: trio.abc.Clock | None = None,
        store: Store | None = None,
        durability: Durability | None = None,
    ) -> EngineThread:
        """An engine thread for ``options`` (the other entry points build theirs this way)."""
        thread = cls.__new__(cls)
        thread._setup(database, clock, store, durability, options)
        return thread

    def _setup(
        self,
        database: str | None,
        clock: trio.abc.Clock | None,
        store: Store | None,
        durability: Durability | None,
        options: EngineOptions,
    ) -> None:
        self._open_args = (database, store, durability, options)
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._engine: Engine | None = None
        self._nursery: trio.Nursery | None = None
        self._stopping: trio.Event | None = None
        self._error: BaseException | None = None
        self._stopped = False
        self._inbox: deque[_Call] = deque()
        self._wake_pending = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread and block until the engine is open (its store loaded). Raises
        whatever stopped it from opening, e.g. InvalidRequest for a bad database URL or
        option, a StoreError for a store that cannot be used; InvalidRequest if this thread
        was already started."""
        if self._thread is not None:
            raise InvalidRequest("this EngineThread was already started")
        self._thread = threading.Thread(target=self._run, name="stockade-engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self, timeout: float | None = None) -> None:
        """Close the engine (calls in flight are answered, the journal is committed) and join
        the thread; blocks until then, or raises TimeoutError after ``timeout`` seconds.
        Idempotent. Raises the error that crashed the engine thread, if any."""
        thread = self._thread
        if thread is None:
            return
        if not self._stopped and self._token is not None:
            self._stopped = True
            with suppress(trio.RunFinishedError):  # already stopped by itself
                self._token.run_sync_soon(self._request_stop)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError("the engine thread did not stop in time")
        if self._error is not None:
            raise self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped

    def _run(self) -> None:
        try:
            trio.run(self._main, clock=self._clock)
        except BaseException as exc:
            if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                self._error = exc.exceptions[0]
            else:
                self._error = exc
        finally:
            while self._inbox:  # calls that arrived as the engine stopped
                self._inbox.popleft()[3].settle(None, self._closed())
            self._ready.set()

    async def _main(self) -> None:
        # The nursery closes first (every call task has finished), then open_engine commits
        # the journal.
        opened = open_engine_and_store(*self._open_args)
        async with opened as (engine, _), trio.open_nursery() as nursery:
            self._engine = engine
            self._nursery = nursery
            self._stopping = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stopping.wait()

    def _request_stop(self) -> None:
        assert self._stopping is not None
        self._drain_inbox()  # calls made before stop() are still served
        self._stopping.set()

    # -- calls --------------------------------------------------------------------------------
    #
    # Calls cross into the trio thread through ``_inbox``: a deque (appends are atomic) plus one
    # ``run_sync_soon`` wake-up per batch, not per call. Each call then runs as a task in the
    # engine's nursery and settles its ``Reply`` from the trio thread.

    def submit(
        self,
        fn: Callable[Concatenate[Engine, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> concurrent.futures.Future[T]:
        """Start ``fn(engine, *args, **kwargs)`` on the engine thread, e.g.
        ``submit(Engine.place_order, {"sku-1": 1}, hold_for=60)``, and return a future for its
        outcome (a result, a StockadeError, or EngineClosed if the engine stops first). Never
        blocks; ``future.result(timeout)`` waits. Raises EngineClosed when not running."""
        reply: FutureReply[T] = FutureReply()
        self.enqueue(fn, args, kwargs, reply)
        return reply.future

    def call(
        self,
        fn: Callable[Concatenate[Engine, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(engine, *args, **kwargs)`` on the engine thread and block the calling
        thread for its result (see :class:`BlockingEngine` for calls with a timeout)."""
        reply: ThreadReply[T] = ThreadReply()
        self.enqueue(fn, args, kwargs, reply)
        return reply.wait(None)

    def enqueue(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        reply: Reply[T],
    ) -> None:
        """The step under :meth:`submit`, :meth:`call` and the handles, for writing a handle:
        start ``fn(engine, *args, **kwargs)`` on the engine thread and settle ``reply`` there
        with its outcome. The arguments are not checked here (the typed callers check them).
        Never blocks; raises EngineClosed when the engine is not running."""
        token = self._token
        if token is None or self._stopped:
            raise self._closed()
        self._inbox.append((fn, args, kwargs, reply))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                token.run_sync_soon(self._drain_inbox)
            except trio.RunFinishedError:
                raise self._closed() from self._error

    def run_sync(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run ``fn(*args)`` on the engine thread and return its result; blocks until then.
        For reading engine state consistently, or driving a test clock."""
        if self._token is None:
            raise self._closed()
        try:
            return trio.from_thread.run_sync(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise self._closed() from self._error

    def statistics(self) -> EngineStatistics:
        """The engine's counters, read on its own thread; blocks until then."""
        if self._engine is None:
            raise self._closed()
        return self.run_sync(self._engine.statistics)

    def _drain_inbox(self) -> None:
        self._wake_pending = False  # before popping: a call appended from now on wakes again
        inbox = self._inbox
        stopping = self._stopping
        nursery = self._nursery
        while inbox:
            call = inbox.popleft()
            if stopping is None or stopping.is_set() or nursery is None:
                call[3].settle(None, self._closed())
            else:
                nursery.start_soon(self._serve, *call)

    async def _serve(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        reply: Reply[Any],
    ) -> None:
        assert self._engine is not None
        try:
            result = await fn(self._engine, *args, **kwargs)
        except trio.Cancelled:
            reply.settle(None, self._closed())
            raise
        except Exception as exc:  # handed to the host, where the caller sees it
            reply.settle(None, exc)
        else:
            reply.settle(result, None)

    def _closed(self) -> EngineClosed:
        error = EngineClosed("the engine thread is not running")
        error.__cause__ = self._error
        return error


class ThreadReply(Generic[T]):
    """A blocked host thread's reply: a lock taken at creation and released by ``settle``."""

    __slots__ = ("_done", "error", "result")

    result: T

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.error: BaseException | None = None

    def settle(self, result: T, error: BaseException | None) -> None:
        self.result = result
        self.error = error
        self._done.release()

    def wait(self, timeout: float | None) -> T:
        """Block until settled; raise TimeoutError after ``timeout`` seconds (None: never)."""
        if not self._done.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("the engine did not answer in time (the call still completes)")
        if self.error is not None:
            raise self.error
        return self.result


class FutureReply(Generic[T]):
    """A reply delivered to a ``concurrent.futures.Future`` (ignored if the host cancelled it)."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def settle(self, result: T, error: BaseException | None) -> None:
        try:
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass  # the host gave up on it


class BlockingEngine(BlockingEngineCalls):
    """The engine's API as blocking calls, safe from any number of threads at once.

    Same names, arguments, results and errors as :class:`stockade.Engine` (written once, in
    :class:`~stockade.protocol.surface.BlockingEngineCalls`; each call goes through
    :func:`~stockade.protocol.dispatch.dispatch` on the engine thread). Each call blocks the
    calling thread until the engine answers; with ``timeout`` a call that takes longer raises
    TimeoutError, and still completes on the engine thread.
    """

    def __init__(self, thread: EngineThread, *, timeout: float | None = None) -> None:
        self.thread = thread
        self.timeout = timeout

    def _call(self, call: CallBase[T]) -> T:
        reply: ThreadReply[T] = ThreadReply()
        self.thread.enqueue(dispatch, (call,), {}, reply)
        return reply.wait(self.timeout)

    def events(self, after: int = 0, types: Iterable[str] | None = None) -> BlockingEvents:
        """The change feed after ``after`` (see :meth:`stockade.Engine.events`), as an
        iterator whose steps block the calling thread; ``cursor`` is the seq of the last
        event read."""
        return BlockingEvents(self, EventsCall(after, types))  # type: ignore[arg-type]


class BlockingEvents:
    """The change feed read from a thread (see :meth:`BlockingEngine.events`). Each step
    blocks until the next event; with the handle's ``timeout`` it raises TimeoutError, and
    loses nothing: the next step returns the event that was being fetched. One thread reads
    it at a time."""

    def __init__(self, handle: BlockingEngine, call: EventsCall) -> None:
        self._handle = handle
        self._call = call
        self._opening: ThreadReply[AsyncIterator[Event]] | None = None
        self._reader: AsyncIterator[Event] | None = None
        self._next: ThreadReply[Event] | None = None
        self.cursor = call.after

    def __iter__(self) -> BlockingEvents:
        return self

    def __next__(self) -> Event:
        thread, timeout = self._handle.thread, self._handle.timeout
        if self._reader is None:
            if self._opening is None:
                self._opening = ThreadReply()
                thread.enqueue(start_stream, (self._call,), {}, self._opening)
            opening, self._opening = self._opening, None
            try:
                self._reader = opening.wait(timeout)
            except TimeoutError:
                self._opening = opening  # still coming: the next step waits for it again
                raise
        if self._next is None:
            self._next = ThreadReply()
            thread.enqueue(next_item, (self._reader,), {}, self._next)
        fetching, self._next = self._next, None
        try:
            event = fetching.wait(timeout)
        except TimeoutError:
            self._next = fetching  # the event it fetches is the next step's
            raise
        self.cursor = event.seq
        return event


@contextmanager
def run_in_thread(
    database: str | None = None,
    *,
    timeout: float | None = None,
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
) -> Iterator[BlockingEngine]:
    """Run an engine on its own thread for the ``with`` block and yield its blocking handle::

        with stockade.run_in_thread("sqlite:///stock.db") as engine:
            order = engine.place_order({"sku-1": 1})

    Entering blocks until the store is loaded; leaving the block closes the engine
    (committing the journal) and joins the thread, and raises an error that crashed the
    engine thread. ``timeout`` is the handle's (see :class:`BlockingEngine`), ``clock`` the
    thread's (see :class:`EngineThread`); the rest are :func:`stockade.open_engine`'s.
    """
    options = EngineOptions.from_arguments(locals())
    thread = EngineThread.with_options(
        database, options, clock=clock, store=store, durability=durability
    )
    thread.start()
    try:
        yield BlockingEngine(thread, timeout=timeout)
    finally:
        thread.stop()
