"""The engine's shared state and the machinery every kind of call uses: the clock, the
lifecycle, journaling a decided move, expiry, retirement and start-up.

Everything runs on one trio thread. The engine decides an order move synchronously in the
:class:`~stockade.engine.orders.OrderBook` (so two moves of one order never interleave), journals
it, and hands the stock movements to the product actors. What reaches the journal and when is
chosen so that every committed prefix is a state without oversell (see
:mod:`stockade.engine.changes`):

* a new order's takes (and a cart edit's extra takes) are journaled with its order event, after
  every line was taken;
* everything that frees stock (cancel, return, expiry, a cart line that shrinks) and every
  merchant change is journaled no later than its actor applies it, so nothing that relies on it
  can commit before it.

A move that awaits between deciding and journaling (a cart edit, reading a retired order back)
marks its order *busy*: other moves of that order wait, and expiry of a busy order waits until
the move is done (it then happens after it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta

import msgspec
import trio

from stockade.engine.actors import Dispatcher
from stockade.engine.allocation import SharedAllocations, Strategy
from stockade.engine.changes import Change
from stockade.engine.commands import Command, Release
from stockade.engine.expiry import ExpiryScheduler
from stockade.engine.feed import FeedHub
from stockade.engine.ledger import ProductLedger
from stockade.engine.locations import DEFAULT_LOCATION, LocationTable
from stockade.engine.models import Order
from stockade.engine.orders import OrderBook
from stockade.engine.rules import RuleState
from stockade.engine.storage import History, JournalSink, Snapshot
from stockade.engine.validation import DEFAULT_MAX_HOLD, check_sku
from stockade.errors import (
    CorruptStore,
    EngineClosed,
    InvalidRequest,
    OrderNotFound,
    UnknownProduct,
)

__all__ = [
    "DEFAULT_KEY_TTL",
    "DEFAULT_MAILBOX_SIZE",
    "DEFAULT_MAX_HOLD_LIFETIME",
    "RETIRE_INTERVAL_S",
    "EngineCore",
]

DEFAULT_MAILBOX_SIZE = 10_000
DEFAULT_KEY_TTL = timedelta(hours=24)
DEFAULT_MAX_HOLD_LIFETIME = timedelta(hours=24)
#: How often finished orders past their window are dropped from memory.
RETIRE_INTERVAL_S = 1.0


class EngineCore:
    """State and shared machinery; the public calls live in the mixins of
    :class:`stockade.engine.engine.Engine`."""

    def __init__(
        self,
        journal: JournalSink,
        *,
        history: History | None = None,
        feed: FeedHub | None = None,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        idempotency_ttl: timedelta = DEFAULT_KEY_TTL,
        max_hold: timedelta = DEFAULT_MAX_HOLD,
        max_hold_lifetime: timedelta = DEFAULT_MAX_HOLD_LIFETIME,
        allocation: Strategy = "priority",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if type(mailbox_size) is not int or mailbox_size < 1:
            raise InvalidRequest("mailbox_size must be an integer of at least 1")
        for name, value in (("idempotency_ttl", idempotency_ttl), ("max_hold", max_hold),
                            ("max_hold_lifetime", max_hold_lifetime)):  # fmt: skip
            if not isinstance(value, timedelta) or value.total_seconds() <= 0:
                raise InvalidRequest(f"{name} must be a positive timedelta, not {value!r}")
        self._journal = journal
        self._history = history
        self._feed = feed
        # Wall time is read once; from then on the engine's clock advances with trio's.
        self._epoch = wall_clock() - trio.current_time()
        self._ledgers: dict[str, ProductLedger] = {}
        self._sorted_skus: list[str] | None = None  # for paging; rebuilt when products are added
        self._table = LocationTable(allocation)
        self._book = OrderBook(idempotency_ttl.total_seconds(), max_hold_lifetime.total_seconds())
        self._max_hold_s = max_hold.total_seconds()
        self._dispatcher = Dispatcher(
            self._ledgers, self._table, self._clock, journal.append, mailbox_size
        )
        self._expiry = ExpiryScheduler(self._clock, self._to_trio, self._expire)
        self._busy: dict[str, trio.Event] = {}  # orders with a move in progress across an await
        self._claiming: dict[str, trio.Event] = {}  # idempotency keys of calls in progress
        self._ids: list[str] = []  # a pool of order ids
        self._shared_allocations = SharedAllocations()  # see allocation.SharedAllocations
        self._calls = 0
        self._closing = False
        self._idle = trio.Event()
        self._finished = trio.Event()
        self.placed = 0
        self.counters = {"out_of_stock": 0, "confirmed": 0, "cancelled": 0, "expired": 0,
                         "replayed": 0, "changed": 0, "extended": 0, "extend_refused": 0,
                         "transfers": 0, "returned": 0, "confirmed_late": 0}  # fmt: skip

    # -- clock --------------------------------------------------------------------------------

    def _clock(self) -> float:
        """Now, as UNIX seconds, advancing with trio's clock (so MockClock drives it)."""
        return self._epoch + trio.current_time()

    def _to_trio(self, unix_time: float) -> float:
        return unix_time - self._epoch

    # -- lifecycle ----------------------------------------------------------------------------

    def _enter(self) -> None:
        if self._closing:
            raise EngineClosed("the engine is shutting down")
        self._calls += 1

    def _leave(self) -> None:
        self._calls -= 1
        if self._closing and self._calls == 0:
            self._idle.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the actors, the expiry timer and retirement until :meth:`aclose` has finished
        every call; then stop the timers, let the actors empty their mailboxes, and return."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._expiry.run)
                await nursery.start(self._dispatcher.run)
                retiring = trio.CancelScope()
                if self._history is not None:
                    nursery.start_soon(self._retire_finished, retiring)
                task_status.started()
                await self._idle.wait()
                retiring.cancel()
                self._expiry.stop()
                self._dispatcher.close()
        finally:
            self._closing = True
            self._finished.set()

    async def aclose(self) -> None:
        """Stop taking new calls, answer every call in flight, stop the actors and the timers,
        then return. Blocks until the in-flight calls (including their durability waits) have
        finished and :meth:`run` has returned."""
        self._closing = True
        if self._feed is not None:
            self._feed.close()
        if self._calls == 0:
            self._idle.set()
        await self._finished.wait()

    async def _retire_finished(self, scope: trio.CancelScope) -> None:
        """Drop finished orders from memory once their window has passed (the store keeps
        them), every RETIRE_INTERVAL_S, until ``scope`` is cancelled."""
        book = self._book
        with scope:
            while True:
                await trio.sleep(RETIRE_INTERVAL_S)
                book.retire_due(self._clock(), self._journal.committed_seq, self._busy)

    # -- shared machinery ---------------------------------------------------------------------

    def _known(self, sku: str) -> None:
        if not (type(sku) is str and sku in self._ledgers):
            check_sku(sku)
            raise UnknownProduct(sku)

    async def _journal_move(
        self, event: Change, commands: Sequence[tuple[str, Command]], order: Order, now: float
    ) -> None:
        """Journal a decided move that finishes ``order`` (a confirm or a cancel), hand its
        commands to the actors (they cannot be refused), schedule the order's retirement, and
        wait until the move is durable. Later reads through the mailboxes see the move. Only
        the wait can be cancelled: the move is then made all the same, retirement included."""
        seq = self._journal.append((event,))
        post = self._dispatcher.post
        for sku, command in commands:
            post(sku, command, None, 0, force=True)
        self._finished_order(order, seq, now)
        if self._journal.is_durable(seq):
            await trio.lowlevel.checkpoint()
        else:
            await self._journal.wait_durable(seq)

    async def _settled(self) -> None:
        """Wait until every change journaled so far is durable (at once in ``fast`` mode).

        An answer that repeats what another call did (a replayed idempotency key; a confirm or
        cancel delivered twice) must come no sooner than that call's own answer could, or a
        crash could lose a change the repeat has acknowledged. The other call's move was
        journaled when it was decided, so waiting for everything appended so far covers it.
        Cancellable."""
        journal = self._journal
        seq = journal.appended_seq
        if journal.is_durable(seq):
            await trio.lowlevel.checkpoint()
        else:
            await journal.wait_durable(seq)

    async def _replayed(self, order_id: str) -> Order:
        """The answer to a replayed idempotency key: the order as it is now, once durable."""
        order = await self._lookup(order_id)
        await self._settled()
        return order

    def _finished_order(self, order: Order, seq: int, now: float) -> None:
        """``order`` reached a final status at ``seq``: schedule it to leave memory (only where
        a history can read it back)."""
        if self._history is not None:
            self._book.finished(order, seq, now)

    def _expire(self, order_id: str, now: float) -> None:
        """Expire ``order_id`` if its hold has lapsed (timer or read time); else nothing. A
        busy order (a cart edit in progress) is expired by that move when it ends."""
        if type(order_id) is not str or order_id in self._busy:
            return
        result = self._book.expire(order_id, now)
        if result is None:
            return
        order, event = result
        self.counters["expired"] += 1
        seq = self._journal.append((event,))
        for sku in order.lines:
            self._dispatcher.post(sku, Release(order_id), None, 0, force=True)
        self._finished_order(order, seq, now)

    async def _quiet(self, order_id: str) -> None:
        """Wait while another move of ``order_id`` is in progress."""
        while True:
            busy = self._busy.get(order_id)
            if busy is None:
                return
            await busy.wait()

    def _mark_busy(self, order_id: str) -> None:
        self._busy[order_id] = trio.Event()

    def _unmark_busy(self, order_id: str) -> None:
        self._busy.pop(order_id).set()
        deadline = self._book.deadline(order_id)
        if deadline is not None:  # expiry skipped it while busy: expire now if due
            self._expire(order_id, self._clock())

    async def _resident(self, order_id: str) -> Order:
        """The order, in memory: read back from the store (and kept until it retires again)
        if it had retired. Raises OrderNotFound. Waits while another move of it is busy."""
        while True:
            await self._quiet(order_id)
            order = self._book.orders.get(order_id) if type(order_id) is str else None
            if order is not None:
                return order
            if self._history is None or type(order_id) is not str:
                raise OrderNotFound(str(order_id))
            self._mark_busy(order_id)
            try:
                stored = await self._history.order(order_id)
                if stored is not None:
                    self._book.load(stored)
                    if stored.status != "reserved":
                        self._finished_order(stored, 0, self._clock())
            finally:
                self._busy.pop(order_id).set()
            if stored is None:
                raise OrderNotFound(order_id)

    async def _lookup(self, order_id: str) -> Order:
        """The order as it is now, from memory or (retired) the store, without loading it."""
        order = self._book.orders.get(order_id) if type(order_id) is str else None
        if order is not None:
            await trio.lowlevel.checkpoint()
            return order
        if self._history is None or type(order_id) is not str:
            await trio.lowlevel.checkpoint()
            raise OrderNotFound(str(order_id))
        stored = await self._history.order(order_id)
        if stored is None:
            raise OrderNotFound(order_id)
        return self._book.orders.get(order_id, stored)

    # -- start-up -----------------------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        """Load a store's state before :meth:`run`. The holds of reserved orders must add up to
        each product's ``reserved`` at each location; if they do not, the store is corrupt and
        CorruptStore is raised."""
        table = self._table
        for place in snapshot.locations:
            table.restore_location(place)
        for channel in snapshot.channels:
            table.restore_channel(channel)
        ledgers = self._ledgers
        for sku, location, on_hand, reserved in snapshot.stock:
            ledger = ledgers.get(sku)
            if ledger is None:  # in any row order: every row a site, or only default
                ledger = ledgers[sku] = ProductLedger.created_at(sku, location)
            if location == DEFAULT_LOCATION and ledger.sites is None:
                ledger.on_hand += on_hand
                ledger.reserved += reserved
            else:
                sites = ledger._spread()
                values = sites.setdefault(location, [0, 0])
                values[0] += on_hand
                values[1] += reserved
                ledger.on_hand += on_hand
                ledger.reserved += reserved
        now = self._clock()
        orders = [_with_allocations(order) for order in snapshot.orders]
        held: dict[tuple[str, str], int] = {}
        for order in orders:
            if order.status == "confirmed":  # a return may still put its units back
                for sku in order.lines:
                    if sku not in ledgers:
                        raise CorruptStore(f"order {order.id!r} sold units of unknown {sku!r}")
            if order.status != "reserved":
                continue
            if order.expires_at is None:
                raise CorruptStore(f"order {order.id!r} is reserved but has no deadline")
            for sku, allocation in order.allocations.items():
                ledger = ledgers.get(sku)
                if ledger is None:
                    raise CorruptStore(f"order {order.id!r} holds units of unknown {sku!r}")
                if ledger.holds is None:
                    ledger.holds = {}
                ledger.holds[order.id] = allocation
                for location, qty in allocation.items():
                    held[sku, location] = held.get((sku, location), 0) + qty
        for sku, location in held:
            if ledgers[sku].site(location)[1] == 0:
                raise CorruptStore(
                    f"store is inconsistent for {sku!r} at {location!r}: open holds "
                    f"{held[sku, location]} where nothing is reserved"
                )
        for sku, ledger in ledgers.items():
            for level in ledger.location_levels(table):
                reserved = held.get((sku, level.location), 0)
                if reserved != level.reserved or not 0 <= level.reserved <= level.on_hand:
                    raise CorruptStore(
                        f"store is inconsistent for {sku!r} at {level.location!r}: on_hand "
                        f"{level.on_hand}, reserved {level.reserved}, open holds {reserved}"
                    )
        for rules in snapshot.rules:
            ledger = ledgers.get(rules.sku)
            if ledger is None:
                raise CorruptStore(f"rules of unknown product {rules.sku!r}")
            ledger.rules = RuleState(rules)
        for sku, order_id, customer, units in snapshot.counts:
            state = ledgers[sku].rules if sku in ledgers else None
            if state is not None:
                state.restore(order_id, customer, units)
        self._book.restore(orders, snapshot.keys, now)
        for deadline, order_id in self._book.open_holds():
            if deadline <= now:
                self._expire(order_id, now)  # lapsed while stopped: released before any call
            else:
                self._expiry.add(deadline, order_id)


def _with_allocations(order: Order) -> Order:
    """``order`` with its allocations: all at ``default`` when it records none (an order from
    before locations, or written by hand)."""
    if order.allocations or not order.lines:
        return order
    return msgspec.structs.replace(
        order, allocations={sku: {DEFAULT_LOCATION: qty} for sku, qty in order.lines.items()}
    )
