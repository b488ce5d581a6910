"""Engine throughput: single-line direct purchases against two baselines in the same process.

    ./dev bench engine [--units N] [--tasks N] [--rounds N]     (tasks >= 100, units >= tasks)

Each workload sells out ``units`` units with ``tasks`` concurrent buyer tasks, every buyer
looping ``place_order({sku: 1})`` until OutOfStock. Workloads: one hot product, and units spread
over 100 products (buyer i buys product i % 100). The same buyers run against two baselines:

* the **order-keeping baseline** (:class:`OrderKeeper`) does per order what the engine does to
  keep it, inline in the buyer's task with no actor: the engine's own validation
  (``check_lines``, and ``check_hold`` / ``check_idempotency_key`` when a hold or key is given,
  as in ``Engine.place_order``), an unguessable id from a pool refilled by one ``os.urandom``
  per 1024 ids, the ``Order`` record and its ``OrderPlaced`` event (built and stored by the
  engine's ``OrderBook``), the event appended to a bounded list that a consumer task drains
  without I/O, the stock check-and-decrement, calls counted in and out as the engine counts
  them, and one trio checkpoint. What separates the engine from it is the actor: the mailbox,
  the parked caller and the dispatcher's pass. The target is an engine / order-keeping ratio
  of at least ``TARGET`` (0.8);
* the **dict-decrement ceiling**: check, decrement and one trio checkpoint per purchase (the
  least any trio code serving concurrent callers does: no actor, no order record, no journal).

A third, diagnostic row times the actor round trip alone (``stock()`` reads through the same
mailbox) against the ceiling, to show how much of the cost is the mailbox and how much is keeping
the order.

After every engine and order-keeping run the books are verified: units gone == orders
acknowledged == orders kept, on-hand never below zero. Each figure is the best of ``rounds``
runs; each round runs the ceiling, the order-keeping baseline and the engine one after another
in this process, and the ratios divide the engine's best by each baseline's best.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import trio

import stockade
from stockade.engine.allocation import SharedAllocations, at_default
from stockade.engine.changes import Change
from stockade.engine.core import DEFAULT_KEY_TTL
from stockade.engine.models import Order
from stockade.engine.orders import OrderBook, from_timestamp
from stockade.engine.validation import (
    DEFAULT_MAX_HOLD,
    Lines,
    check_hold,
    check_idempotency_key,
    check_lines,
)

#: engine / order-keeping baseline, for the hot product and for 100 products
TARGET = 0.8
#: products in the spread workload: buyer i buys product i % SPREAD
SPREAD = 100


class VerificationFailed(AssertionError):
    pass


async def _race(tasks: int, buy: Callable[[int], Awaitable[bool]]) -> tuple[int, float]:
    """Run ``tasks`` buyers until each is refused; return (purchases, seconds)."""
    bought = 0

    async def buyer(i: int) -> None:
        nonlocal bought
        while await buy(i):
            bought += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            nursery.start_soon(buyer, i)
    return bought, time.perf_counter() - start


def _buyer(
    place_order: Callable[[dict[str, int]], Awaitable[Order]], skus: list[str]
) -> Callable[[int], Awaitable[bool]]:
    """The purchase the engine and the order-keeping baseline both race: buyer ``i`` buys one
    unit of ``skus[i % len(skus)]``; False once refused."""
    products = len(skus)

    async def buy(i: int) -> bool:
        try:
            await place_order({skus[i % products]: 1})
        except stockade.OutOfStock:
            return False
        return True

    return buy


async def ceiling_run(units: int, tasks: int, products: int) -> float:
    """The dict-decrement ceiling: check, decrement and one trio checkpoint per purchase."""
    per = units // products
    stock = {f"p{n}": per for n in range(products)}
    skus = list(stock)

    async def buy(i: int) -> bool:
        sku = skus[i % products]
        if stock[sku] >= 1:
            stock[sku] -= 1
            await trio.lowlevel.checkpoint()
            return True
        await trio.lowlevel.checkpoint()
        return False

    bought, seconds = await _race(tasks, buy)
    assert bought == per * products
    return bought / seconds


# -- the order-keeping baseline ---------------------------------------------------------------


class PassClock:
    """Now, read once per pass and shared by the orders of that pass, as the engine's dispatcher
    does (``Dispatcher.now`` / ``now_datetime``). A pass here runs from one journal drain to the
    next: :meth:`next_pass` forgets the time, and the first order after it reads the clock."""

    def __init__(self) -> None:
        self._epoch = time.time() - trio.current_time()
        self._now: float | None = None
        self._now_dt: datetime | None = None

    def next_pass(self) -> None:
        self._now = None
        self._now_dt = None

    def now(self) -> float:
        """UNIX seconds, advancing with trio's clock (as ``Engine._clock``)."""
        if self._now is None:
            self._now = self._epoch + trio.current_time()
        return self._now

    def now_datetime(self) -> datetime:
        if self._now_dt is None:
            self._now_dt = from_timestamp(self.now())
        return self._now_dt


class ListJournal:
    """Events appended to a list; :meth:`run` drains it whenever anything was appended and
    keeps nothing (no I/O), as the engine's journal writer does over the memory store of
    ``open_engine(None)``. Bounded like it: :meth:`admit` raises Overloaded once
    ``max_buffered`` events wait. Each drain also starts a new pass of ``clock``, standing in
    for the engine's dispatcher, which reads the clock once per pass.
    """

    def __init__(self, clock: PassClock, max_buffered: int = 100_000) -> None:
        self.clock = clock
        self.max_buffered = max_buffered
        self.drained = 0
        self._buffer: list[Change] = []
        self._wakeup: trio.Event | None = None  # set while the consumer waits for events
        self._closing = False

    def admit(self) -> None:
        if len(self._buffer) >= self.max_buffered:
            raise stockade.Overloaded("the journal is full; retry later")

    def append(self, events: tuple[Change, ...]) -> None:
        self._buffer.extend(events)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drain until :meth:`close` and the list is empty. Waits while there is nothing to
        drain; cancellable there and at the checkpoint after each drain."""
        task_status.started()
        while True:
            if self._buffer:
                events, self._buffer = self._buffer, []
                self.drained += len(events)
                self.clock.next_pass()
                await trio.lowlevel.checkpoint()
            elif self._closing:
                return
            else:
                self._wakeup = trio.Event()
                await self._wakeup.wait()

    def close(self) -> None:
        """Let :meth:`run` return once the list is empty."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None


class OrderKeeper:
    """The order-keeping baseline: ``place_order`` keeps every order as the engine does, inline
    in the caller's task (no actor), for direct purchases. ``stock`` maps sku to units on
    hand; :attr:`journal`'s :meth:`ListJournal.run` must be running in a nursery.

    Calls are counted in and out as the engine counts them for its shutdown (``_enter`` /
    ``_leave``); after :meth:`close` new calls raise EngineClosed. Besides the actor (the Take
    message, the mailbox, the parked caller, the dispatcher's pass and the reschedule, replaced
    here by one checkpoint, and the journal place the engine holds across that await), it leaves
    out only the engine's fast-mode durability test, one method call that answers True: if
    anything, that makes this baseline a little faster than the engine's order keeping.
    """

    def __init__(self, stock: dict[str, int], max_buffered: int = 100_000) -> None:
        self.stock = stock
        self.clock = PassClock()
        self.journal = ListJournal(self.clock, max_buffered)
        self.book = OrderBook(DEFAULT_KEY_TTL.total_seconds())
        self._max_hold_s = DEFAULT_MAX_HOLD.total_seconds()
        self._ids: list[str] = []
        self.shared = SharedAllocations()
        self.placed = 0
        self.out_of_stock = 0
        self.in_flight = 0
        self._closed = False

    def _enter(self) -> None:
        if self._closed:
            raise stockade.EngineClosed("the baseline is closed")
        self.in_flight += 1

    def _leave(self) -> None:
        self.in_flight -= 1

    def close(self) -> None:
        """Refuse new calls (EngineClosed); calls in flight finish."""
        self._closed = True

    async def place_order(
        self,
        lines: Lines,
        *,
        hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Take every line or none and keep the order, ``confirmed``. Bad input raises
        InvalidRequest or UnknownProduct at once; a short line raises OutOfStock after the
        checkpoint, Overloaded when the journal is full, EngineClosed after :meth:`close`; none
        of them changes anything. Holds and idempotency keys are validated, then refused
        (InvalidRequest): the baseline keeps direct purchases only. The one checkpoint comes
        before anything changes, so a cancelled call leaves nothing behind."""
        stock = self.stock
        checked = check_lines(lines, stock)
        hold_s = None if hold_for is None else check_hold(hold_for, self._max_hold_s)
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        if hold_s is not None or key is not None:
            raise stockade.InvalidRequest("the baseline keeps direct purchases only")
        for sku in checked:
            if sku not in stock:
                raise stockade.UnknownProduct(sku)
        self._enter()
        try:
            await trio.lowlevel.checkpoint()  # where the engine parks for its actors
            journal = self.journal
            journal.admit()
            order_id = self._ids.pop() if self._ids else self._more_ids()
            for sku, qty in checked.items():
                if stock[sku] < qty:
                    self.out_of_stock += 1
                    raise stockade.OutOfStock(
                        {s: (q, stock[s]) for s, q in checked.items() if stock[s] < q}
                    )
            for sku, qty in checked.items():
                stock[sku] -= qty
            clock = self.clock
            if len(checked) == 1:  # as the engine records a one-line order's allocations
                ((sku, qty),) = checked.items()
                allocations = self.shared.of(sku, qty)
            else:
                allocations = {sku: at_default(qty) for sku, qty in checked.items()}
            order, event = self.book.place(
                order_id, checked, allocations, clock.now(), clock.now_datetime(), None, None
            )
            journal.append((event,))
            self.placed += 1
            return order
        finally:
            self._leave()

    def _more_ids(self) -> str:
        """The engine's scheme (``Engine._more_ids``): one ``os.urandom`` per 1024 ids."""
        pool = os.urandom(16 * 1024).hex()
        self._ids = [pool[i : i + 32] for i in range(32, len(pool), 32)]
        return pool[:32]


async def keeping_run(units: int, tasks: int, products: int) -> float:
    """The order-keeping baseline, verified like the engine after the race."""
    per = units // products
    skus = [f"p{n}" for n in range(products)]
    keeper = OrderKeeper(dict.fromkeys(skus, per))
    async with trio.open_nursery() as nursery:
        await nursery.start(keeper.journal.run)
        acknowledged, seconds = await _race(tasks, _buyer(keeper.place_order, skus))
        keeper.close()
        keeper.journal.close()
    if keeper.in_flight != 0:
        raise VerificationFailed(f"{keeper.in_flight} calls still counted in flight")
    gone = sum(per - keeper.stock[sku] for sku in skus)
    kept = len(keeper.book.orders)
    if min(keeper.stock.values()) < 0:
        raise VerificationFailed(f"stock below zero: {keeper.stock}")
    if not gone == acknowledged == kept == keeper.journal.drained == per * products:
        raise VerificationFailed(
            f"units gone {gone}, orders acknowledged {acknowledged}, kept {kept}, "
            f"journaled {keeper.journal.drained}, units {per * products}"
        )
    return acknowledged / seconds


# -- the engine ------------------------------------------------------------------------------


async def engine_run(units: int, tasks: int, products: int) -> float:
    per = units // products
    skus = [f"p{n}" for n in range(products)]
    async with stockade.open_engine(None) as engine:
        for sku in skus:
            await engine.set_stock(sku, per)
        acknowledged, seconds = await _race(tasks, _buyer(engine.place_order, skus))
        gone = 0
        for sku in skus:
            level = await engine.stock(sku)
            if level.on_hand < 0 or level.reserved != 0:
                raise VerificationFailed(f"{sku}: {level}")
            gone += per - level.on_hand
        if gone != acknowledged or acknowledged != per * products:
            raise VerificationFailed(f"units gone {gone} != orders acknowledged {acknowledged}")
    return acknowledged / seconds


async def mailbox_run(units: int, tasks: int, products: int) -> float:
    """Diagnostic: the actor round trip alone, as ``stock()`` reads through the mailbox."""
    per_task = units // tasks
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("p0", 1)

        async def reader(i: int) -> bool:
            counts[i] += 1
            if counts[i] > per_task:
                return False
            await engine.stock("p0")
            return True

        counts = [0] * tasks
        reads, seconds = await _race(tasks, reader)
    return reads / seconds


Run = Callable[[int, int, int], Awaitable[float]]


def check_options(units: int, tasks: int, rounds: int) -> None:
    """Refuse (SystemExit) options with which a run could not sell every unit or time nothing."""
    if rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    if tasks < SPREAD:
        raise SystemExit(
            f"--tasks must be at least {SPREAD}: buyer i buys product i % {SPREAD}, so with "
            "fewer buyers some products never sell"
        )
    if units < tasks:
        raise SystemExit(
            "--units must be at least --tasks: each task of the round-trip row reads units // tasks"
        )


async def main(units: int, tasks: int, rounds: int) -> None:
    check_options(units, tasks, rounds)
    print(f"stockade engine bench: {units:,} units, {tasks} concurrent buyers, best of {rounds}")
    print(f"target: engine / order-keeping baseline >= {TARGET}")
    print(
        f"{'workload':<26}{'engine per s':>14}{'keeping per s':>15}{'ratio':>7}  {'target':<8}"
        f"{'ceiling ops/s':>15}{'ratio':>7}  verified"
    )
    workloads: tuple[tuple[str, int, Run, bool], ...] = (
        ("hot product", 1, engine_run, True),
        (f"{SPREAD} products", SPREAD, engine_run, True),
        ("round trip only (diag.)", 1, mailbox_run, False),
    )
    for label, products, run, keeping in workloads:
        best_engine = best_keeping = best_ceiling = 0.0
        for _ in range(rounds):
            gc.collect()
            best_ceiling = max(best_ceiling, await ceiling_run(units, tasks, products))
            if keeping:
                gc.collect()
                best_keeping = max(best_keeping, await keeping_run(units, tasks, products))
            gc.collect()
            best_engine = max(best_engine, await run(units, tasks, products))
        if keeping:
            ratio = best_engine / best_keeping
            met = "met" if ratio >= TARGET else "NOT met"
            versus = f"{best_keeping:>15,.0f}{ratio:>7.2f}  {met:<8}"
        else:
            versus = f"{'-':>15}{'-':>7}  {'-':<8}"
        print(
            f"{label:<26}{best_engine:>14,.0f}{versus}"
            f"{best_ceiling:>15,.0f}{best_engine / best_ceiling:>7.2f}  yes"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trio.run(main, args.units, args.tasks, args.rounds)
