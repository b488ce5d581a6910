"""Placing orders, confirming and cancelling them: the engine's hot paths."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import NoReturn, TypeGuard

import trio
from trio.lowlevel import wait_task_rescheduled

from stockade.engine.actors import Waiter, _cannot_abort
from stockade.engine.allocation import AT_DEFAULT, SHARED_BELOW
from stockade.engine.commands import Command, Confirm, GiveBack, Release, Return, Take
from stockade.engine.core import EngineCore
from stockade.engine.holders import check_holder
from stockade.engine.ledger import TakeReply
from stockade.engine.models import KeyUse, Order, ProductRules
from stockade.engine.rules import Refused
from stockade.engine.validation import (
    Lines,
    check_hold,
    check_idempotency_key,
    check_lines,
    check_order_fields,
)
from stockade.errors import (
    InvalidRequest,
    InvalidTransition,
    LimitExceeded,
    NotOnSale,
    OrderNotFound,
    OutOfStock,
    Overloaded,
    StockadeError,
    UnknownProduct,
)

__all__ = ["Placing"]


class Placing(EngineCore):
    async def place_order(
        self,
        lines: Lines,
        *,
        hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None,
        location: str | None = None,
        channel: str | None = None,
        customer: str | None = None,
        reference: str | None = None,
        metadata: Mapping[str, str] | None = None,
        holder: str | None = None,
        max_open_holds: int | None = None,
    ) -> Order:
        """Take every line or none. With ``hold_for`` the units are held (``reserved``) until
        confirmed, cancelled or expired; without, the order is ``confirmed`` at once.

        ``holder`` names who holds it, for a bound on open holds (the HTTP server passes an
        anonymous caller's client address): a hold is refused with TooManyHolds when its
        holder already has ``max_open_holds`` holds open (None: no bound), counting those
        being placed, so a rush of one holder's parallel calls never passes the bound; a
        hold counts until confirmed, cancelled or expired. Ignored for a direct purchase.

        Units come from the active locations (of ``channel``, if given), allocated by the
        engine's strategy; ``location`` pins every line to that one location. The order records
        where each unit came from in ``allocations``. ``customer``, ``reference`` and
        ``metadata`` are kept on the order; a product's rules (``set_rules``) are checked by
        its actor as each line is taken, and ``per_customer`` counts the ``customer``'s units.

        Raises OutOfStock (with every short line) after giving back lines already taken,
        NotOnSale (a line outside its product's sale window), LimitExceeded (over
        ``per_order`` or ``per_customer``, or a ``per_customer`` product ordered with no
        ``customer``; with every such line), InvalidRequest, UnknownProduct,
        UnknownLocation, UnknownChannel, IdempotencyConflict, TooManyHolds (a ``holder`` at
        its ``max_open_holds``); every refusal takes nothing.
        The same ``idempotency_key`` with the same lines returns the original order (as it is
        now, once that is durable) and takes nothing.
        """
        # One coroutine per order, deliberately flat: this is the engine's hot path.
        ledgers = self._ledgers
        checked = check_lines(lines, ledgers)
        hold_s = None if hold_for is None else check_hold(hold_for, self._max_hold_s)
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        where = (
            None if location is None and channel is None else self._table.where(channel, location)
        )
        meta = None
        if customer is not None or reference is not None or metadata is not None:
            meta = check_order_fields(customer, reference, metadata)
        for sku in checked:
            if sku not in ledgers:
                raise UnknownProduct(sku)
        if holder is not None and hold_s is not None:
            holder, limit = check_holder(holder, max_open_holds)
        else:
            holder = None
        self._enter()
        try:
            if key is not None:
                use = await self._claim_key(key, "place", checked)
                if use is not None:
                    return await self._replayed(use.order_id)
            journal = self._journal
            claimed = False
            holding = None  # the holder whose place this call claimed, until the order has it
            try:
                if holder is not None:
                    self._book.holders.claim(holder, limit, self._first_lapse)
                    holding = holder
                # A journal slot is held from here to the append, across the take: otherwise
                # a burst of callers would all pass the check before any appends.
                journal.claim_slot()
                claimed = True
                dispatcher = self._dispatcher
                if len(checked) > 1 and not dispatcher.has_room(checked):
                    raise self._overloaded(checked)
                order_id = self._ids.pop() if self._ids else self._more_ids()
                hold = hold_s is not None
                waiter: Waiter[TakeReply] = Waiter(len(checked))
                index = 0
                for sku, qty in checked.items():  # a full mailbox refuses a lone line here
                    dispatcher.post(
                        sku,
                        Take(order_id=order_id, qty=qty, hold=hold, where=where)
                        if customer is None
                        else Take(order_id=order_id, qty=qty, hold=hold, where=where,
                                  customer=customer),
                        waiter,
                        index,
                    )  # fmt: skip
                    index += 1
                await wait_task_rescheduled(_cannot_abort)  # bounded; see actors.py
                replies = waiter.replies
                if index == 1:  # (sku and qty are the one line's, from the loop)
                    allocation = replies[0]
                    if type(allocation) is not dict:
                        await self._give_back(order_id, checked, replies, hold)
                    if qty < SHARED_BELOW and allocation is AT_DEFAULT[qty]:
                        allocations = self._shared_allocations.of(sku, qty)
                    else:
                        allocations = {sku: allocation}
                else:
                    if not _all_taken(replies):
                        await self._give_back(order_id, checked, replies, hold)
                    allocations = dict(zip(checked, replies, strict=True))
                now = dispatcher.now
                expires_at = None if hold_s is None else now + hold_s
                order, event = self._book.place(
                    order_id, checked, allocations, now, dispatcher.now_datetime(), expires_at,
                    key, channel, location, customer, reference, meta, holding,
                )  # fmt: skip
                holding = None
                seq = journal.append((event,))
                journal.free_slot()
                claimed = False
                if expires_at is not None:
                    self._expiry.add(expires_at, order_id)
                elif self._history is not None:
                    self._book.finished(order, seq, now)
                self.placed += 1
            finally:
                if claimed:
                    journal.free_slot()
                if holding is not None:  # refused: the place goes back
                    self._book.holders.unclaim(holding)
                if key is not None:
                    self._claiming.pop(key).set()
            if not journal.is_durable(seq):
                await journal.wait_durable(seq)
            return order
        finally:
            self._leave()

    def _first_lapse(self, order_ids: set[str]) -> float:
        """Seconds until the first of ``order_ids`` (open holds) lapses; 1 if none has a
        deadline yet (all still being placed)."""
        deadlines = [d for d in map(self._book.deadline, order_ids) if d is not None]
        return max(min(deadlines) - self._clock(), 1.0) if deadlines else 1.0

    async def _claim_key(
        self, key: str, kind: str, fingerprint: dict[str, int] | float, order_id: str | None = None
    ) -> KeyUse | None:
        """The earlier use of ``key`` (IdempotencyConflict if it was for another request), or
        None once this caller holds the key. A caller finding the key in flight waits for that
        attempt's outcome first. The holder must pop ``_claiming[key]`` and set it when done."""
        while True:
            use = self._book.recall(key, kind, fingerprint, self._clock(), order_id)
            if use is not None:
                self.counters["replayed"] += 1
                return use
            claiming = self._claiming.get(key)
            if claiming is None:
                self._claiming[key] = trio.Event()
                return None
            await claiming.wait()

    def _more_ids(self) -> str:
        """Refill the pool of unguessable 128-bit order ids: one ``os.urandom`` per 1024."""
        pool = os.urandom(16 * 1024).hex()
        self._ids = [pool[i : i + 32] for i in range(32, len(pool), 32)]
        return pool[:32]

    async def _give_back(
        self,
        order_id: str,
        lines: Mapping[str, int],
        replies: list[TakeReply | BaseException],
        hold: bool,
    ) -> NoReturn:
        """Return the lines that were taken, wait until they are back, raise why the others
        were not: NotOnSale or LimitExceeded (a product's rules refused a line; in that order
        of precedence), else OutOfStock."""
        shortages: dict[str, tuple[int, int]] = {}
        refused: list[Refused] = []
        taken: list[tuple[str, dict[str, int]]] = []
        for (sku, qty), reply in zip(lines.items(), replies, strict=True):
            if isinstance(reply, dict):
                taken.append((sku, reply))
            elif isinstance(reply, BaseException):
                raise reply
            elif isinstance(reply, Refused):
                refused.append(reply)
            else:
                shortages[sku] = (qty, reply)
        if taken:
            back: Waiter[None] = Waiter(len(taken))
            for index, (sku, allocation) in enumerate(taken):
                command = GiveBack(order_id=order_id, allocation=allocation, hold=hold)
                self._dispatcher.post(sku, command, back, index, force=True)
            await back.wait()
        if refused:
            raise self._refusal(refused)
        self.counters["out_of_stock"] += 1
        raise OutOfStock(shortages)

    def _refusal(self, refused: list[Refused]) -> StockadeError:
        """The error for lines a product's rules refused."""
        for r in refused:
            if r.rule == "window":
                state = self._ledgers[r.sku].rules
                rules = ProductRules(sku=r.sku) if state is None else state.rules
                return NotOnSale(r.sku, rules.opens_at, rules.closes_at)
        return LimitExceeded({r.sku: (r.rule, r.limit, r.counted, r.requested)
                              for r in refused})  # fmt: skip

    def _overloaded(self, skus: Mapping[str, int]) -> Overloaded:
        return Overloaded(f"a product mailbox is full ({', '.join(skus)}); retry later")

    async def confirm(self, order_id: str, *, late: bool = False) -> Order:
        """Turn a hold into a sale. Idempotent: a confirmed order is returned as it is.
        Raises InvalidTransition for a cancelled or expired order (including one whose
        ``expires_at`` has passed), OrderNotFound for an unknown id.

        With ``late=True`` (a payment that arrived after the hold lapsed) an expired order is
        confirmed all the same if its units are available now: taken again, every line or
        none, from the locations its channel or pin allows, by the engine's allocation rule
        (they may come from other locations than the hold did; ``allocations`` shows where).
        Else OutOfStock, and nothing changes. A reserved order is confirmed as usual; a
        cancelled one is InvalidTransition. Waits for the actors like ``place_order``."""
        if type(order_id) is not str:
            raise OrderNotFound(str(order_id))
        if type(late) is not bool:
            raise InvalidRequest("late must be True or False")
        self._enter()
        try:
            if order_id in self._busy or order_id not in self._book.orders:
                await self._resident(order_id)
            now = self._clock()
            self._expire(order_id, now)  # a lapsed hold is expired here, even before its timer
            order = self._book.get(order_id)
            if late and order.status == "expired":
                self._mark_busy(order_id)
                try:
                    return await self._confirm_late(order)
                finally:
                    self._unmark_busy(order_id)
            if order.status == "reserved":
                self._journal.admit()
            order, event = self._book.confirm(order_id, now)
            if event is not None:
                self.counters["confirmed"] += 1
                await self._journal_move(
                    event, [(sku, Confirm(order_id)) for sku in order.lines], order, now
                )
            else:
                await self._settled()  # a repeat: confirmed by another call
            return order
        finally:
            self._leave()

    async def _confirm_late(self, order: Order) -> Order:
        """Take an expired order's lines again, sold outright, then journal the confirm;
        OutOfStock (after giving back what was taken) if any line is short. The caller marks
        the order busy."""
        journal = self._journal
        journal.claim_slot()
        claimed = True
        try:
            taken = await self._take_for(order, order.lines, False)
            now = self._clock()
            confirmed, event = self._book.confirm_late(order.id, taken, now)
            seq = journal.append((event,))
            journal.free_slot()
            claimed = False
        finally:
            if claimed:
                journal.free_slot()
        self.counters["confirmed"] += 1
        self.counters["confirmed_late"] += 1
        self._finished_order(confirmed, seq, now)
        if not journal.is_durable(seq):
            await journal.wait_durable(seq)
        return confirmed

    async def _take_for(
        self, order: Order, lines: Mapping[str, int], hold: bool
    ) -> dict[str, dict[str, int]]:
        """Take ``lines`` for an order that exists (a cart edit's growth, held; a late
        payment's lines, sold), from the locations its channel or pin allows, through each
        product's actor as a placement's lines are taken (so whatever the actor checks per
        order applies here too): the allocations taken, by sku, or OutOfStock after giving
        back what was taken. The caller holds a journal slot. Not cancellable (bounded by one
        dispatcher pass); Overloaded, taking nothing, while a mailbox is full."""
        dispatcher = self._dispatcher
        if not dispatcher.has_room(lines):
            raise self._overloaded(lines)
        where = (
            None if order.channel is None and order.location is None
            else self._table.where(order.channel, order.location)
        )  # fmt: skip
        waiter: Waiter[TakeReply] = Waiter(len(lines))
        for index, (sku, qty) in enumerate(lines.items()):
            # A product's rules see the order's customer and, for a cart edit, the line's
            # new total (per_order); a late payment retakes the order's own units (only
            # per_customer is checked again: see Take).
            take = Take(order_id=order.id, qty=qty, hold=hold, where=where,
                        customer=order.customer, line=order.lines.get(sku, 0) + qty if hold else 0,
                        retake=not hold)  # fmt: skip
            dispatcher.post(sku, take, waiter, index)
        replies = await waiter.wait()
        if not _all_taken(replies):
            await self._give_back(order.id, lines, replies, hold)
        return dict(zip(lines, replies, strict=True))

    async def cancel(self, order_id: str, *, allow_return: bool = True) -> Order:
        """Cancel an order: release its hold, or for a confirmed order take the units back on
        hand where they came from (a return). Idempotent: a cancelled or expired order is
        returned as it is. With ``allow_return=False`` a confirmed order raises
        InvalidTransition instead, decided in the same step as the cancel (a hold confirmed
        meanwhile is never returned)."""
        if type(order_id) is not str:
            raise OrderNotFound(str(order_id))
        self._enter()
        try:
            if order_id in self._busy or order_id not in self._book.orders:
                await self._resident(order_id)
            now = self._clock()
            self._expire(order_id, now)
            order = self._book.get(order_id)
            if order.status == "confirmed" and not allow_return:
                raise InvalidTransition(order_id, "confirmed", "cancel")
            if order.status in ("reserved", "confirmed"):
                self._journal.admit()
            order, event = self._book.cancel(order_id, now)
            if event is None:
                await self._settled()  # a repeat: cancelled or expired by another move
                return order
            self.counters["cancelled"] += 1
            if event.was == "reserved":
                moves: list[tuple[str, Command]] = [(sku, Release(order_id)) for sku in order.lines]
            else:  # a return: every unit not returned before
                back = order.allocations if event.moves is None else event.moves
                moves = [(sku, Return(order_id, allocation))
                         for sku, allocation in back.items()]  # fmt: skip
            await self._journal_move(event, moves, order, now)
            return order
        finally:
            self._leave()

    async def get_order(self, order_id: str) -> Order:
        """The order as it is now (a lapsed hold shows as expired); an order that left memory
        is read from the store. Raises OrderNotFound."""
        self._enter()
        try:
            self._expire(order_id, self._clock())
            return await self._lookup(order_id)
        finally:
            self._leave()


def _all_taken(replies: list[TakeReply | BaseException]) -> TypeGuard[list[dict[str, int]]]:
    """Whether every Take was granted: each reply an allocation."""
    return all(type(r) is dict for r in replies)
