"""The engine: the public async API over product actors, the order book and the journal.

The calls live in mixins by subject — :mod:`placing <stockade.engine.placing>` (orders),
:mod:`carts <stockade.engine.carts>` (changing and extending holds),
:mod:`merchant <stockade.engine.merchant>` (stock, locations, channels, reads) — over the shared
machinery of :mod:`core <stockade.engine.core>`, which explains what reaches the journal when.
In ``durable`` mode each call returns once the batch holding its change has committed.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from stockade.engine.carts import Carts
from stockade.engine.core import (
    DEFAULT_KEY_TTL,
    DEFAULT_MAILBOX_SIZE,
    DEFAULT_MAX_HOLD,
    DEFAULT_MAX_HOLD_LIFETIME,
)
from stockade.engine.journal import JournalStatistics, OrderQuery
from stockade.engine.merchant import Merchant
from stockade.engine.models import Movement, Order, OrderStatus
from stockade.errors import InvalidRequest

__all__ = [
    "DEFAULT_KEY_TTL",
    "DEFAULT_MAILBOX_SIZE",
    "DEFAULT_MAX_HOLD",
    "DEFAULT_MAX_HOLD_LIFETIME",
    "Engine",
    "EngineStatistics",
]

_STATUSES = ("reserved", "confirmed", "cancelled", "expired")


class EngineStatistics(msgspec.Struct, frozen=True):
    """A snapshot of the engine's counters (see :meth:`Engine.statistics`)."""

    placed: int
    out_of_stock: int
    confirmed: int
    cancelled: int
    expired: int
    replayed: int
    changed: int
    extended: int
    extend_refused: int
    transfers: int
    products: int
    locations: int
    orders: int
    retired: int
    scheduled_expiries: int
    active_actors: int
    queued_messages: int
    messages: int
    passes: int
    journal: JournalStatistics


class Engine(Carts, Merchant):
    """Sells stock under any concurrency without overselling. Build it with
    :func:`stockade.open_engine`; every method is safe to call from many tasks at once.

    Each call is checked before anything changes: a refused call changes nothing. A call
    may raise Overloaded (a full mailbox or journal: retry later) or EngineClosed (shutting
    down). Waiting for actors cannot be cancelled (it is bounded by one dispatcher pass); waiting
    for durability can be, and the change then still commits, unacknowledged.
    """

    # -- history ------------------------------------------------------------------------------

    async def list_orders(
        self,
        status: OrderStatus | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[Order]:
        """A page of orders, newest first, read from the store (every change made so far is
        committed first, so a caller sees its own orders). ``after`` is the id of the last
        order of the previous page. Raises InvalidRequest for a bad filter; with a memory store
        that keeps nothing, the orders still in memory are listed."""
        if status is not None and status not in _STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        for name, value in (("created_after", created_after), ("created_before", created_before)):
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise InvalidRequest(f"{name} must be a timezone-aware datetime")
        if after is not None and (type(after) is not str or not 1 <= len(after) <= 64):
            raise InvalidRequest("after must be an order id")
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be from 1 to 1000")
        query = OrderQuery(
            status,
            None if created_after is None else created_after.timestamp(),
            None if created_before is None else created_before.timestamp(),
            after,
            limit,
        )
        self._enter()
        try:
            if self._history is None:
                return _page_in_memory(list(self._book.orders.values()), query)
            await self._journal.flush()
            return await self._history.orders(query)
        finally:
            self._leave()

    async def movements(
        self, sku: str, after: int | None = None, limit: int = 100
    ) -> list[Movement]:
        """A page of ``sku``'s movements ledger in ``seq`` order, after ``after`` (the ``seq``
        of the last movement of the previous page). Every change made so far is committed
        first. Raises UnknownProduct, InvalidRequest; with a memory store that keeps nothing,
        the ledger is empty."""
        self._known(sku)
        if after is not None and (type(after) is not int or after < 0):
            raise InvalidRequest("after must be a movement seq (a non-negative integer)")
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be from 1 to 1000")
        self._enter()
        try:
            if self._history is None:
                return []
            await self._journal.flush()
            return await self._history.movements(sku, after, limit)
        finally:
            self._leave()

    # -- statistics ---------------------------------------------------------------------------

    def statistics(self) -> EngineStatistics:
        """A snapshot of counters: orders by outcome, products, locations, orders in memory
        and retired, actors and mailboxes, and the journal's (never blocks)."""
        counters = self.counters
        dispatcher = self._dispatcher
        return EngineStatistics(
            placed=self.placed,
            out_of_stock=counters["out_of_stock"],
            confirmed=counters["confirmed"],
            cancelled=counters["cancelled"],
            expired=counters["expired"],
            replayed=counters["replayed"],
            changed=counters["changed"],
            extended=counters["extended"],
            extend_refused=counters["extend_refused"],
            transfers=counters["transfers"],
            products=len(self._ledgers),
            locations=len(self._table.locations),
            orders=len(self._book.orders),
            retired=self._book.retired,
            scheduled_expiries=len(self._expiry),
            active_actors=dispatcher.active_actors,
            queued_messages=dispatcher.queued_messages,
            messages=dispatcher.messages,
            passes=dispatcher.passes,
            journal=self._journal.statistics(),
        )


def _page_in_memory(orders: list[Order], query: OrderQuery) -> list[Order]:
    """:meth:`Engine.list_orders` over orders in memory (a store that keeps nothing)."""
    orders.sort(key=lambda o: (o.created_at.timestamp(), o.id), reverse=True)
    if query.after is not None:
        ids = [o.id for o in orders]
        start = ids.index(query.after) + 1 if query.after in ids else len(orders)
        orders = orders[start:]
    out = []
    for order in orders:
        t = order.created_at.timestamp()
        if query.status is not None and order.status != query.status:
            continue
        if query.created_after is not None and t <= query.created_after:
            continue
        if query.created_before is not None and t >= query.created_before:
            continue
        out.append(order)
        if len(out) == query.limit:
            break
    return out
