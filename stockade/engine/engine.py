"""The engine: the public async API over product actors, the order book and the journal.

Everything runs on one trio thread. The engine decides an order move synchronously in the
:class:`~stockade.engine.orders.OrderBook` (so two moves of one order never interleave), journals
it, and hands the stock movements to the product actors. What reaches the journal and when is
chosen so that every committed prefix is a state without oversell (see
:mod:`stockade.engine.events`):

* a new order's takes are journaled with its ``OrderPlaced`` record, after every line was taken;
* everything that frees stock (cancel, return, expiry) and every merchant change is journaled no
  later than its actor applies it, so nothing that relies on it can commit before it.

In ``durable`` mode each call returns once the batch holding its change has committed.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import trio
from trio.lowlevel import wait_task_rescheduled

from stockade.engine.actors import Dispatcher, Waiter, _cannot_abort
from stockade.engine.commands import (
    Adjust,
    Confirm,
    GiveBack,
    Read,
    Release,
    Return,
    SetStock,
    Take,
)
from stockade.engine.events import Event
from stockade.engine.expiry import ExpiryScheduler
from stockade.engine.journal import JournalSink
from stockade.engine.ledger import ProductLedger
from stockade.engine.models import EngineStatistics, Order, StockLevel
from stockade.engine.orders import OrderBook
from stockade.engine.validation import (
    DEFAULT_MAX_HOLD,
    MAX_REASON_LENGTH,
    MAX_STOCK,
    Lines,
    check_hold,
    check_idempotency_key,
    check_lines,
    check_sku,
    check_stock_value,
)
from stockade.errors import (
    CorruptStore,
    EngineClosed,
    InvalidRequest,
    InvalidTransition,
    OutOfStock,
    Overloaded,
    UnknownProduct,
)

__all__ = ["DEFAULT_KEY_TTL", "DEFAULT_MAILBOX_SIZE", "Engine"]

DEFAULT_MAILBOX_SIZE = 10_000
DEFAULT_KEY_TTL = timedelta(hours=24)


class Engine:
    """Sells stock under any concurrency without overselling. Build it with
    :func:`stockade.open_engine`; every method is safe to call from many tasks at once.

    Each call is checked before anything changes: a refused call changes nothing. A call
    may raise Overloaded (a full mailbox or journal: retry later) or EngineClosed (shutting
    down). Waiting for actors cannot be cancelled (it is bounded by one dispatcher pass); waiting
    for durability can be, and the change then still commits, unacknowledged.
    """

    def __init__(
        self,
        journal: JournalSink,
        *,
        mailbox_size: int = DEFAULT_MAILBOX_SIZE,
        idempotency_ttl: timedelta = DEFAULT_KEY_TTL,
        max_hold: timedelta = DEFAULT_MAX_HOLD,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if mailbox_size < 1:
            raise InvalidRequest("mailbox_size must be at least 1")
        self._journal = journal
        # Wall time is read once; from then on the engine's clock advances with trio's.
        self._epoch = wall_clock() - trio.current_time()
        self._ledgers: dict[str, ProductLedger] = {}
        self._sorted_skus: list[str] | None = None  # for paging; rebuilt when products are added
        self._book = OrderBook(idempotency_ttl.total_seconds())
        self._max_hold_s = max_hold.total_seconds()
        self._dispatcher = Dispatcher(self._ledgers, self._clock, journal.append, mailbox_size)
        self._expiry = ExpiryScheduler(self._clock, self._to_trio, self._expire)
        self._ids: list[str] = []
        self.placed = 0
        self._placing: dict[str, trio.Event] = {}  # idempotency keys of orders being placed
        self._calls = 0
        self._closing = False
        self._idle = trio.Event()
        self._finished = trio.Event()
        self.counters = {"out_of_stock": 0, "confirmed": 0, "cancelled": 0,
                         "expired": 0, "replayed": 0}  # fmt: skip

    # -- clock --------------------------------------------------------------------------------

    def _clock(self) -> float:
        """Now, as UNIX seconds, advancing with trio's clock (so MockClock drives it)."""
        return self._epoch + trio.current_time()

    def _to_trio(self, unix_time: float) -> float:
        return unix_time - self._epoch

    # -- merchant calls -----------------------------------------------------------------------

    async def set_stock(self, sku: str, on_hand: int) -> StockLevel:
        """Create the product or overwrite its on-hand. Refused with InvalidRequest outside
        0..MAX_STOCK, with its subclass StockConflict below what open holds reserve."""
        check_sku(sku)
        check_stock_value("on_hand", on_hand, low=0, high=MAX_STOCK)
        self._enter()
        try:
            return await self._change_product(sku, SetStock(on_hand), create=True)
        finally:
            self._leave()

    async def adjust_stock(self, sku: str, delta: int, reason: str = "") -> StockLevel:
        """Move on-hand by ``delta`` (non-zero). Refused with StockConflict (an InvalidRequest)
        if on-hand would fall below what is reserved (or below zero) or rise above MAX_STOCK."""
        self._known(sku)
        check_stock_value("delta", delta, low=-MAX_STOCK, high=MAX_STOCK)
        if delta == 0:
            raise InvalidRequest("delta must not be zero")
        if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
            raise InvalidRequest(
                f"reason must be a string of at most {MAX_REASON_LENGTH} characters"
            )
        self._enter()
        try:
            return await self._change_product(sku, Adjust(delta, reason))
        finally:
            self._leave()

    async def _change_product(
        self, sku: str, command: SetStock | Adjust, *, create: bool = False
    ) -> StockLevel:
        """A merchant change: the actor applies it and journals its event after an await, so a
        slot in the journal is claimed until then; the answer waits until it is durable. With
        ``create`` a missing product is made, only once the journal has admitted the change."""
        self._journal.claim_slot()
        try:
            if create and sku not in self._ledgers:
                self._ledgers[sku] = ProductLedger(sku)
            level, seq = await self._dispatcher.ask(sku, command)
        finally:
            self._journal.free_slot()
        if not self._journal.is_durable(seq):
            await self._journal.wait_durable(seq)
        return level

    # -- orders -------------------------------------------------------------------------------

    async def place_order(
        self,
        lines: Lines,
        *,
        hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Take every line or none. With ``hold_for`` the units are held (``reserved``) until
        confirmed, cancelled or expired; without, the order is ``confirmed`` at once.

        Raises OutOfStock (with every short line) after giving back lines already taken,
        UnknownProduct, InvalidRequest, IdempotencyConflict. The same ``idempotency_key`` with
        the same lines returns the original order and takes nothing.
        """
        # One coroutine per order, deliberately flat: this is the engine's hot path.
        ledgers = self._ledgers
        checked = check_lines(lines, ledgers)
        hold_s = None if hold_for is None else check_hold(hold_for, self._max_hold_s)
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        for sku in checked:
            if sku not in ledgers:
                raise UnknownProduct(sku)
        self._enter()
        try:
            if key is not None:
                existing = await self._claim_key(key, checked)
                if existing is not None:
                    return existing
            journal = self._journal
            claimed = False
            try:
                # A slot in the journal is claimed from here to the append, across the take:
                # otherwise a burst of callers would all pass the check before any appends.
                journal.claim_slot()
                claimed = True
                dispatcher = self._dispatcher
                if len(checked) > 1 and not dispatcher.has_room(checked):
                    raise self._overloaded(checked)
                order_id = self._ids.pop() if self._ids else self._more_ids()
                hold = hold_s is not None
                waiter = Waiter(len(checked))
                index = 0
                for sku, qty in checked.items():  # a full mailbox refuses a lone line here
                    dispatcher.post(sku, Take(order_id=order_id, qty=qty, hold=hold), waiter, index)
                    index += 1
                await wait_task_rescheduled(_cannot_abort)  # bounded; see actors.py
                replies = waiter.replies
                if replies.count(None) != index:
                    await self._give_back(order_id, checked, replies, hold=hold)
                now = dispatcher.now
                expires_at = None if hold_s is None else now + hold_s
                order, event = self._book.place(
                    order_id, checked, now, dispatcher.now_datetime(), expires_at, key
                )
                seq = journal.append((event,))
                journal.free_slot()
                claimed = False
                if expires_at is not None:
                    self._expiry.add(expires_at, order_id)
                self.placed += 1
            finally:
                if claimed:
                    journal.free_slot()
                if key is not None:
                    self._placing.pop(key).set()
            if not journal.is_durable(seq):
                await journal.wait_durable(seq)
            return order
        finally:
            self._leave()

    async def _claim_key(self, key: str, lines: dict[str, int]) -> Order | None:
        """The order already placed with ``key`` (IdempotencyConflict if its lines differ), or
        None once this caller holds the key. A caller finding the key in flight waits for that
        attempt's outcome first."""
        while True:
            existing = self._book.by_key(key, lines, self._clock())
            if existing is not None:
                self.counters["replayed"] += 1
                await trio.lowlevel.checkpoint()
                return existing
            placing = self._placing.get(key)
            if placing is None:
                self._placing[key] = trio.Event()
                return None
            await placing.wait()

    def _more_ids(self) -> str:
        """Refill the pool of unguessable 128-bit order ids: one ``os.urandom`` per 1024."""
        pool = os.urandom(16 * 1024).hex()
        self._ids = [pool[i : i + 32] for i in range(32, len(pool), 32)]
        return pool[:32]

    async def _give_back(
        self, order_id: str, lines: dict[str, int], replies: list[Any], *, hold: bool
    ) -> None:
        """Return the lines that were taken, wait until they are back, raise OutOfStock."""
        shortages: dict[str, tuple[int, int]] = {}
        taken = [(sku, qty) for (sku, qty), r in zip(lines.items(), replies, strict=True)
                 if r is None]  # fmt: skip
        for (sku, qty), reply in zip(lines.items(), replies, strict=True):
            if reply is not None:
                if isinstance(reply, BaseException):
                    raise reply
                shortages[sku] = (qty, reply)
        if taken:
            waiter = Waiter(len(taken))
            for index, (sku, qty) in enumerate(taken):
                command = GiveBack(order_id=order_id, qty=qty, hold=hold)
                self._dispatcher.post(sku, command, waiter, index, force=True)
            await waiter.wait()
        self.counters["out_of_stock"] += 1
        raise OutOfStock(shortages)

    def _overloaded(self, skus: Mapping[str, int]) -> Overloaded:
        return Overloaded(f"a product mailbox is full ({', '.join(skus)}); retry later")

    async def confirm(self, order_id: str) -> Order:
        """Turn a hold into a sale. Idempotent: a confirmed order is returned as it is.
        Raises InvalidTransition for a cancelled or expired order (including one whose
        ``expires_at`` has passed), OrderNotFound for an unknown id."""
        self._enter()
        try:
            now = self._clock()
            self._expire(order_id, now)  # a lapsed hold is expired here, even before its timer
            order = self._book.get(order_id)
            if order.status == "reserved":
                self._journal.admit()
            order, event = self._book.confirm(order_id, now)
            if event is not None:
                self.counters["confirmed"] += 1
                await self._move(event, [(sku, Confirm(order_id)) for sku in order.lines])
            else:
                await trio.lowlevel.checkpoint()
            return order
        finally:
            self._leave()

    async def cancel(self, order_id: str, *, allow_return: bool = True) -> Order:
        """Cancel an order: release its hold, or for a confirmed order take the units back on
        hand (a return). Idempotent: a cancelled or expired order is returned as it is.
        With ``allow_return=False`` a confirmed order raises InvalidTransition instead, decided
        in the same step as the cancel (a hold confirmed meanwhile is never returned)."""
        self._enter()
        try:
            now = self._clock()
            self._expire(order_id, now)
            order = self._book.get(order_id)
            if order.status == "confirmed" and not allow_return:
                raise InvalidTransition(order_id, "confirmed", "cancel")
            if order.status in ("reserved", "confirmed"):
                self._journal.admit()
            order, event = self._book.cancel(order_id, now)
            if event is None:
                await trio.lowlevel.checkpoint()
                return order
            self.counters["cancelled"] += 1
            if event.was == "reserved":
                await self._move(event, [(sku, Release(order_id)) for sku in order.lines])
            else:
                returns = [(sku, Return(order_id, qty)) for sku, qty in order.lines.items()]
                await self._move(event, returns)
            return order
        finally:
            self._leave()

    async def _move(self, event: Event, commands: list[tuple[str, Any]]) -> None:
        """Journal a decided move, hand its commands to the actors (they cannot be refused),
        and wait until it is durable. Later reads through the mailboxes see the move."""
        seq = self._journal.append((event,))
        for sku, command in commands:
            self._dispatcher.post(sku, command, None, 0, force=True)
        if self._journal.is_durable(seq):
            await trio.lowlevel.checkpoint()
        else:
            await self._journal.wait_durable(seq)

    def _expire(self, order_id: str, now: float) -> None:
        """Expire ``order_id`` if its hold has lapsed (timer or read time); else nothing."""
        if type(order_id) is not str:
            return
        result = self._book.expire(order_id, now)
        if result is None:
            return
        order, event = result
        self.counters["expired"] += 1
        self._journal.append((event,))
        for sku in order.lines:
            self._dispatcher.post(sku, Release(order_id), None, 0, force=True)

    # -- reads --------------------------------------------------------------------------------

    async def get_order(self, order_id: str) -> Order:
        """The order as it is now (a lapsed hold shows as expired). Raises OrderNotFound."""
        self._enter()
        try:
            self._expire(order_id, self._clock())
            await trio.lowlevel.checkpoint()
            return self._book.get(order_id)
        finally:
            self._leave()

    async def stock(self, sku: str) -> StockLevel:
        """The product's StockLevel, ordered after every change already sent to it."""
        self._known(sku)
        self._enter()
        try:
            return await self._dispatcher.ask(sku, Read())
        finally:
            self._leave()

    def has_product(self, sku: str) -> bool:
        """Whether ``sku`` has been given stock (never blocks)."""
        return type(sku) is str and sku in self._ledgers

    def products(self, after: str | None = None, limit: int = 100) -> list[StockLevel]:
        """Up to ``limit`` products in sku order, starting after ``after``: a page of a listing.
        Read at one instant (no actor is asked), so changes still in mailboxes are not shown.
        Raises InvalidRequest for a limit that is not an integer from 1 to 1000, or an
        ``after`` that is not a string."""
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be an integer from 1 to 1000, not {limit!r}")
        if after is not None and type(after) is not str:
            raise InvalidRequest(f"after must be a sku or None, not {after!r}")
        if self._sorted_skus is None or len(self._sorted_skus) != len(self._ledgers):
            self._sorted_skus = sorted(self._ledgers)
        skus = self._sorted_skus
        start = 0 if after is None else bisect.bisect_right(skus, after)
        return [self._ledgers[sku].level() for sku in skus[start : start + limit]]

    def statistics(self) -> EngineStatistics:
        """A frozen snapshot of the counters: orders by outcome, products, actors, open holds,
        and the journal's (``journal``). Never blocks; call it on the engine's thread."""
        counters = self.counters
        dispatcher = self._dispatcher
        return EngineStatistics(
            placed=self.placed,
            out_of_stock=counters["out_of_stock"],
            confirmed=counters["confirmed"],
            cancelled=counters["cancelled"],
            expired=counters["expired"],
            replayed=counters["replayed"],
            products=len(self._ledgers),
            orders=len(self._book.orders),
            scheduled_expiries=len(self._expiry),
            active_actors=dispatcher.active_actors,
            queued_messages=dispatcher.queued_messages,
            messages=dispatcher.messages,
            passes=dispatcher.passes,
            journal=self._journal.statistics(),
        )

    def _known(self, sku: str) -> None:
        if not (type(sku) is str and sku in self._ledgers):
            check_sku(sku)
            raise UnknownProduct(sku)

    # -- lifecycle ----------------------------------------------------------------------------

    def _enter(self) -> None:
        if self._closing:
            raise EngineClosed("the engine is shutting down")
        self._calls += 1

    def _leave(self) -> None:
        self._calls -= 1
        if self._closing and self._calls == 0:
            self._idle.set()

    def restore(
        self,
        products: Mapping[str, tuple[int, int]],
        orders: list[Order],
        key_times: dict[str, float],
    ) -> None:
        """Load a store's state before :meth:`run`: ``products`` maps sku to ``(on_hand,
        reserved)``. The holds of reserved orders must add up to each product's ``reserved`` and
        have deadlines, and every open or confirmed order must name known products; if not, the
        store is corrupt and CorruptStore is raised."""
        ledgers = self._ledgers
        for sku, (on_hand, reserved) in products.items():
            ledgers[sku] = ProductLedger(sku, on_hand, reserved)
        held: dict[str, int] = {}
        for order in orders:
            if order.status == "confirmed":  # a return may still put its units back
                for sku in order.lines:
                    if sku not in ledgers:
                        raise CorruptStore(f"order {order.id!r} sold units of unknown {sku!r}")
            if order.status != "reserved":
                continue
            if order.expires_at is None:
                raise CorruptStore(f"order {order.id!r} is reserved but has no deadline")
            for sku, qty in order.lines.items():
                ledger = ledgers.get(sku)
                if ledger is None:
                    raise CorruptStore(f"order {order.id!r} holds units of unknown {sku!r}")
                if ledger.holds is None:
                    ledger.holds = {}
                ledger.holds[order.id] = qty
                held[sku] = held.get(sku, 0) + qty
        for sku, ledger in ledgers.items():
            if held.get(sku, 0) != ledger.reserved or not 0 <= ledger.reserved <= ledger.on_hand:
                raise CorruptStore(
                    f"store is inconsistent for {sku!r}: on_hand {ledger.on_hand}, reserved "
                    f"{ledger.reserved}, open holds {held.get(sku, 0)}"
                )
        self._book.restore(orders, key_times)
        now = self._clock()
        for deadline, order_id in self._book.open_holds():
            if deadline <= now:
                self._expire(order_id, now)  # lapsed while stopped: released before any call
            else:
                self._expiry.add(deadline, order_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the actors and the expiry timer until :meth:`aclose` has finished every call;
        then stop the timer, let the actors empty their mailboxes, and return."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._expiry.run)
                await nursery.start(self._dispatcher.run)
                task_status.started()
                await self._idle.wait()
                self._expiry.stop()
                self._dispatcher.close()
        finally:
            self._closing = True
            self._finished.set()

    async def aclose(self) -> None:
        """Stop taking new calls, answer every call in flight, stop the actors and the expiry
        timer, then return. Blocks until the in-flight calls (including their durability waits)
        have finished and :meth:`run` has returned."""
        self._closing = True
        if self._calls == 0:
            self._idle.set()
        await self._finished.wait()
