"""Partial returns: some units of a sold order come back (design.md §13).

A return is decided in the order book in one synchronous step (so two returns of one order,
or a return and a cancel, never interleave), journaled, and handed to the product actors as
:class:`~stockade.engine.commands.Return` messages, which cannot be refused: like a cancel, it
only ever adds stock, so it is journaled no later than the actors apply it.

Which locations the units come back to follows from the order alone (its ``allocations``, and
the counts ``returned`` and ``written_off``): restocked units fill a line's locations in its
allocation's own order (the order the units were taken in: with the ``priority`` strategy, the
first location first), so the ``n`` th unit restocked goes back where the ``n`` th unit was
taken; written-off units are counted from the allocation's last location back (see
:func:`~stockade.engine.allocation.returned_parts`). A whole cancel afterwards brings back
exactly the rest, and the books check verifies it all location by location.
"""

from __future__ import annotations

from stockade.engine.carts import Carts
from stockade.engine.commands import Return
from stockade.engine.models import Order
from stockade.engine.validation import Lines, check_idempotency_key, check_lines
from stockade.errors import InvalidRequest, OrderNotFound

__all__ = ["Returns"]


class Returns(Carts):
    async def return_units(
        self,
        order_id: str,
        lines: Lines,
        *,
        restock: bool = True,
        idempotency_key: str | None = None,
    ) -> Order:
        """Take back ``lines`` (``{sku: qty}``) of a confirmed order. With ``restock`` the
        units go back on hand at the locations they were sold from; with ``restock=False``
        they are written off (on-hand does not move; the movements ledger records
        ``written_off``). ``Order.returned`` (and ``written_off``) count them; the order is
        ``cancelled`` once every unit is back. Answers the order after the return, once
        durable.

        Raises InvalidTransition for an order that is not confirmed (reserved, expired,
        cancelled: every unit already back), ReturnConflict (an InvalidRequest) for a line the
        order does not have or more units than it bought and has not returned yet,
        InvalidRequest for bad lines, OrderNotFound, IdempotencyConflict; nothing changes.
        The same ``idempotency_key`` with the same lines (and the same ``restock``) returns
        the order as it is now and moves nothing; with other lines, or another order, it
        raises IdempotencyConflict. Works on an order that
        left memory (read back from the store). Cancellable only while it waits for
        durability (the return is then made all the same).
        """
        if type(order_id) is not str:
            raise OrderNotFound(str(order_id))
        if type(restock) is not bool:
            raise InvalidRequest("restock must be True or False")
        checked = check_lines(lines, self._ledgers)
        key = None if idempotency_key is None else check_idempotency_key(idempotency_key)
        kind = "return" if restock else "write_off"
        self._enter()
        try:

            async def take_back() -> tuple[Order, int, float]:
                await self._resident(order_id)
                now = self._clock()
                self._expire(order_id, now)
                self._book.check_return(order_id, checked)  # refused: nothing journaled
                self._journal.admit()
                order, event = self._book.return_units(order_id, checked, restock, now)
                seq = self._journal.append((event,))
                for sku, allocation in event.moves.items():
                    command = Return(order_id, allocation, restock)
                    self._dispatcher.post(sku, command, None, 0, force=True)
                self._finished_order(order, seq, now)
                self.counters["returned"] += 1
                return order, seq, now

            return await self._keyed_move(order_id, key, kind, checked, take_back)
        finally:
            self._leave()
