"""Carts: changing a held order's lines and extending its hold (design.md §8)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import trio

from stockade.engine.cartplan import growth, settle
from stockade.engine.changes import KeyUsed
from stockade.engine.commands import Release
from stockade.engine.models import KeyUse, Order
from stockade.engine.placing import Placing
from stockade.engine.validation import Lines, check_hold, check_idempotency_key, check_lines
from stockade.errors import InvalidRequest, InvalidTransition, OrderNotFound, UnknownProduct

__all__ = ["Carts"]


class Carts(Placing):
    async def change_order(
        self, order_id: str, lines: Lines, *, idempotency_key: str | None = None
    ) -> Order:
        """Replace a reserved order's lines (a cart edit): units added are taken (allocated as
        the order was), units removed are released, all or nothing. The deadline does not move.

        A line that grows is checked against its product's rules as a new order's is (the
        sale window, ``per_order`` for the line's new total, ``per_customer`` for the units
        added). Raises OutOfStock (naming every short line; the order and every product are
        left as they were), NotOnSale, LimitExceeded, InvalidTransition (the order is not
        reserved, or its hold has lapsed), OrderNotFound, UnknownProduct, InvalidRequest (no
        lines: cancel to empty a cart), IdempotencyConflict. Edits of one order are
        serialised: a second edit sees the first's result. The same ``idempotency_key`` with
        the same lines applies once.
        """
        ledgers = self._ledgers
        checked = check_lines(lines, ledgers)
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        for sku in checked:
            if sku not in ledgers:
                raise UnknownProduct(sku)
        if type(order_id) is not str:
            raise OrderNotFound(str(order_id))
        self._enter()
        try:

            async def edit() -> tuple[Order, int, float]:
                await self._resident(order_id)
                now = self._clock()
                self._expire(order_id, now)
                order = self._book.check_open(order_id, now, "change")
                if order.lines == checked:  # these lines may be another call's edit:
                    await trio.lowlevel.checkpoint()  # answer once it is durable
                    return order, self._journal.appended_seq, now
                self._mark_busy(order_id)
                try:
                    changed, seq = await self._change(order, checked, now)
                finally:
                    self._unmark_busy(order_id)
                return changed, seq, now

            return await self._keyed_move(order_id, key, "change", checked, edit)
        finally:
            self._leave()

    async def _change(self, order: Order, lines: dict[str, int], now: float) -> tuple[Order, int]:
        """Take what grows, then (all taken) journal the edit and release what shrinks."""
        journal = self._journal
        dispatcher = self._dispatcher
        old = order.lines
        grow = growth(old, lines)
        journal.claim_slot()
        claimed = True
        try:
            taken = await self._take_for(order, grow, True) if grow else {}
            allocations, moves, releases = settle(
                old, order.allocations, lines, taken, self._table.rank()
            )
            changed, event = self._book.change(order.id, lines, allocations, moves, now)
            seq = journal.append((event,))
            journal.free_slot()
            claimed = False
            for sku, part in releases:
                dispatcher.post(sku, Release(order.id, part), None, 0, force=True)
            self.counters["changed"] += 1
            return changed, seq
        finally:
            if claimed:
                journal.free_slot()

    async def extend(
        self, order_id: str, hold_for: timedelta | float, *, idempotency_key: str | None = None
    ) -> Order:
        """Move a reserved order's deadline to ``now + hold_for``, capped at ``created_at +
        max_hold_lifetime``; the answer shows the deadline granted (a deadline already later
        is kept). Raises InvalidTransition for an order not reserved, or already at its cap;
        OrderNotFound; InvalidRequest for a bad ``hold_for``."""
        if hold_for is None:
            raise InvalidRequest("hold_for must be a timedelta or a number of seconds")
        hold_s = check_hold(hold_for, self._max_hold_s)
        assert hold_s is not None
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        if type(order_id) is not str:
            raise OrderNotFound(str(order_id))
        self._enter()
        try:

            async def lengthen() -> tuple[Order, int, float]:
                await self._resident(order_id)
                now = self._clock()
                self._expire(order_id, now)
                self._book.check_open(order_id, now, "extend")
                self._journal.admit()
                try:
                    order, event = self._book.extend(order_id, hold_s, now)
                except InvalidTransition as refused:
                    if refused.why is not None:
                        self.counters["extend_refused"] += 1
                    raise
                seq = self._journal.appended_seq  # no event: the deadline another call set
                if event is not None:
                    seq = self._journal.append((event,))
                    deadline = self._book.deadline(order_id)
                    assert deadline is not None
                    self._expiry.add(deadline, order_id)
                    self.counters["extended"] += 1
                return order, seq, now

            return await self._keyed_move(order_id, key, "extend", hold_s, lengthen)
        finally:
            self._leave()

    async def _keyed_move(
        self,
        order_id: str,
        key: str | None,
        kind: str,
        fingerprint: dict[str, int] | float,
        move: Callable[[], Awaitable[tuple[Order, int, float]]],
    ) -> Order:
        """Run ``move`` (a move of ``order_id`` that answers the order, the seq to wait for
        and its time) under an idempotency ``key``: a key used before answers the order as it
        is now (IdempotencyConflict for another ``kind``, ``fingerprint`` or order) and moves
        nothing; a new one is remembered with the move, journaled after it. Answers once the
        move (and the key) are durable; only that wait can be cancelled."""
        if key is not None:
            use = await self._claim_key(key, kind, fingerprint, order_id)
            if use is not None:
                return await self._replayed(order_id)
        try:
            order, seq, now = await move()
            if key is not None:  # appended last: waiting for it covers the move too
                seq = self._remember(key, kind, order_id, fingerprint, now)
        finally:
            if key is not None:
                self._claiming.pop(key).set()
        if not self._journal.is_durable(seq):
            await self._journal.wait_durable(seq)
        else:
            await trio.lowlevel.checkpoint()
        return order

    def _remember(
        self, key: str, kind: str, order_id: str, fingerprint: dict[str, int] | float, now: float
    ) -> int:
        """Remember a key use, journaled so that it survives a restart: its seq, which the
        answer waits for like a change (a retry after a crash must still find the key)."""
        use = KeyUse(key, kind, order_id, fingerprint, now)
        self._book.remember(use)
        return self._journal.append((KeyUsed(use, now),))
