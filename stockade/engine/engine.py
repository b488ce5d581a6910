"""The engine: the public async API over product actors, the order book and the journal.

The calls live in mixins by subject — :mod:`placing <stockade.engine.placing>` (orders),
:mod:`carts <stockade.engine.carts>` (changing and extending holds),
:mod:`returns <stockade.engine.returns>` (partial returns),
:mod:`merchant <stockade.engine.merchant>` (stock, locations, channels, reads) — over the shared
machinery of :mod:`core <stockade.engine.core>`, which explains what reaches the journal when.
In ``durable`` mode each call returns once the batch holding its change has committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import trio

from stockade.engine.feed import FeedHub
from stockade.engine.merchant import Merchant
from stockade.engine.models import (
    EVENT_TYPES,
    EngineStatistics,
    Event,
    Movement,
    Order,
    OrderStatus,
)
from stockade.engine.returns import Returns
from stockade.engine.storage import History, OrderQuery, orders_page
from stockade.engine.validation import check_order_fields
from stockade.errors import FeedGone, InvalidRequest

__all__ = ["Engine", "FeedReader"]

_STATUSES = ("reserved", "confirmed", "cancelled", "expired")


class Engine(Returns, Merchant):
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
        customer: str | None = None,
    ) -> list[Order]:
        """A page of orders, newest first, read from the store (every change made so far is
        committed first, so a caller sees its own orders); only ``customer``'s if given.
        ``after`` is the id of the last order of the previous page. Raises InvalidRequest for
        a bad filter; with a memory store that keeps nothing, the orders still in memory are
        listed."""
        if status is not None and status not in _STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        for name, value in (("created_after", created_after), ("created_before", created_before)):
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise InvalidRequest(f"{name} must be a timezone-aware datetime")
        if after is not None and (type(after) is not str or not 1 <= len(after) <= 64):
            raise InvalidRequest("after must be an order id")
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be from 1 to 1000")
        if customer is not None:
            check_order_fields(customer, None, None)
        query = OrderQuery(
            status,
            None if created_after is None else created_after.timestamp(),
            None if created_before is None else created_before.timestamp(),
            after,
            limit,
            customer,
        )
        self._enter()
        try:
            if self._history is None:
                return orders_page(self._book.orders.values(), query)
            await self._journal.flush()
            return await self._history.orders(query)
        finally:
            self._leave()

    async def movements(
        self, sku: str, after: int | None = None, limit: int = 100
    ) -> list[Movement]:
        """A page of ``sku``'s movements ledger in ``seq`` order, after ``after`` (the ``seq``
        of the last movement of the previous page). A page never splits one change's
        movements (a transfer, or an order taking from several locations, shares one ``seq``
        over its rows), so it may hold a few more than ``limit`` to finish the last change.
        Every change made so far is committed first. Raises UnknownProduct, InvalidRequest;
        with a memory store that keeps nothing, the ledger is empty."""
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

    # -- the change feed ----------------------------------------------------------------------

    def events(self, after: int = 0, types: Iterable[str] | None = None) -> FeedReader:
        """The change feed after ``after`` (a seq; 0: from the oldest kept): the history read
        from the store, then live events as they commit, with no gap and no duplicate at the
        switch; only ``types`` (any of EVENT_TYPES) if given. Ends only when the engine closes
        (EngineClosed); stop reading whenever (it holds nothing that needs closing). ``after``
        is checked against what the feed keeps when the first event is asked for.

        A reader that falls behind the live ring (RING_SIZE events) reads the store again at
        its own pace: a slow reader never holds back the engine. Raises FeedGone when events
        after a given ``after`` were pruned (older than ``event_retention``; also mid-stream,
        for a reader that fell that far behind), when ``after`` is beyond the newest event, or
        when the store keeps no feed; InvalidRequest for a bad ``after`` or type.
        """
        _check_after(after)
        return FeedReader(self._feed_position, after, _check_types(types))

    async def event_page(
        self, after: int = 0, limit: int = 100, types: Iterable[str] | None = None
    ) -> tuple[list[Event], int]:
        """A page of the change feed after ``after``: up to ``limit`` events (of ``types``)
        and the cursor for the next page (the last seq looked at). Raises as :meth:`events`."""
        wanted = _check_types(types)
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be from 1 to 1000")
        _, history, start = await self._feed_position(after)
        await self._journal.flush()
        events = await history.events(start, limit, wanted)
        return events, events[-1].seq if events else start

    @property
    def feed_head(self) -> int | None:
        """The seq of the newest event committed so far (0 before the first); None when the
        engine keeps no change feed. Never blocks."""
        return None if self._feed is None or self._history is None else self._feed.head

    async def _feed_position(self, after: int) -> tuple[FeedHub, History, int]:
        """The hub, the history and where to start reading: ``after``, or for ``after=0``
        (a reader with no position yet) just before the oldest event kept."""
        _check_after(after)
        hub, history = self._feed, self._history
        if hub is None or history is None:
            raise FeedGone("this engine keeps no change feed (a store that keeps nothing)")
        first, last = await history.feed_bounds()
        last = max(last, hub.head)
        if after > last:
            raise FeedGone(f"after={after} is beyond the newest event ({last})", first, last)
        if after == 0:
            return hub, history, max(first - 1, 0)
        if after < first - 1:
            raise FeedGone(
                f"events after {after} were pruned: the oldest kept is {first}", first, last
            )
        return hub, history, after

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
            returned=counters["returned"],
            confirmed_late=counters["confirmed_late"],
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


class FeedReader:
    """An async iterator over the change feed (see :meth:`Engine.events`)."""

    def __init__(
        self,
        position: Callable[[int], Awaitable[tuple[FeedHub, History, int]]],
        after: int,
        wanted: tuple[str, ...] | None,
    ) -> None:
        self._position: Callable[[int], Awaitable[tuple[FeedHub, History, int]]] | None = position
        self._hub: FeedHub | None = None
        self._history: History | None = None
        self.cursor = after  # the last seq read (delivered or filtered out)
        self._wanted = wanted
        self._page: list[Event] = []
        self._next = 0
        self._scanned = after  # the last seq the page covers, wanted or not

    def __aiter__(self) -> FeedReader:
        return self

    async def __anext__(self) -> Event:
        """The next event: waits for one to commit. Cancellable."""
        while True:
            while self._next < len(self._page):
                event = self._page[self._next]
                self._next += 1
                self.cursor = event.seq
                if self._wanted is None or event.type in self._wanted:
                    return event
            self.cursor = max(self.cursor, self._scanned)
            self._page, self._next = await self._fill(), 0

    async def batch(self, limit: int) -> list[Event]:
        """The next wanted events, at least one and at most ``limit``: those already read from
        the store or the live ring, without waiting for more once one is there. ``cursor``
        then says how far they reach (unwanted events after the last of them included, when
        none is left in the page). Waits for the first as ``__anext__`` does. Cancellable."""
        events = [await self.__anext__()]
        while len(events) < limit and self._next < len(self._page):
            event = self._page[self._next]
            self._next += 1
            self.cursor = event.seq
            if self._wanted is None or event.type in self._wanted:
                events.append(event)
        if self._next >= len(self._page):
            self.cursor = max(self.cursor, self._scanned)
        return events

    async def _fill(self) -> list[Event]:
        if self._position is not None:  # the first call: check the position once
            self._hub, self._history, self.cursor = await self._position(self.cursor)
            self._position = None
        hub, history, cursor = self._hub, self._history, self.cursor
        assert hub is not None and history is not None
        while True:
            fresh = hub.since(cursor, self._wanted)  # filtered by type before decoding
            if fresh is not None:
                events, self._scanned = fresh
                if events:
                    await trio.lowlevel.checkpoint()
                    return events
                self.cursor = cursor = self._scanned  # none wanted: read past them
            else:  # behind the ring: read the store
                page = await history.events(cursor, 1000)
                if page and page[0].seq != cursor + 1:
                    raise FeedGone(
                        f"events after {cursor} were pruned while this reader was behind",
                        page[0].seq, hub.head,
                    )  # fmt: skip
                if page:
                    self._scanned = page[-1].seq
                    return page
            await hub.wait_beyond(cursor)


def _check_after(after: object) -> None:
    if type(after) is not int or after < 0:
        raise InvalidRequest("after must be a non-negative integer (an event seq)")


def _check_types(types: Iterable[str] | None) -> tuple[str, ...] | None:
    if types is None:
        return None
    if isinstance(types, str):
        types = [types]
    wanted = tuple(types)
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown or not wanted:
        raise InvalidRequest(
            f"unknown event type {unknown[0]!r}: use {', '.join(EVENT_TYPES)}"
            if unknown
            else "types must name at least one event type"
        )
    return wanted
