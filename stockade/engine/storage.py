"""What the engine needs from the layers below it: a journal to append its change events to,
and (optionally) a history to read what left memory. :mod:`stockade.persistence` provides
implementations; the engine imports none of them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import msgspec

from stockade.engine.changes import Change
from stockade.engine.models import (
    Channel,
    JournalStatistics,
    KeyUse,
    Location,
    Movement,
    Order,
    ProductRules,
)
from stockade.engine.models import Event as FeedEvent
from stockade.errors import InvalidRequest

__all__ = ["History", "JournalSink", "OrderQuery", "Snapshot", "orders_page"]


class Snapshot(msgspec.Struct, gc=False):
    """What a store holds, for the engine to start from.

    ``stock`` rows are ``(sku, location, on_hand, reserved)``; ``orders`` are the open holds and
    the orders still inside the idempotency window (never the whole history); ``keys`` the
    idempotency-key uses inside the window; ``last_seq`` the journal's last committed event;
    ``last_event_seq`` the change feed's newest public event; ``rules`` and ``counts`` the
    products' sale rules and the live ``per_customer`` counts (rows of orders still reserved
    or confirmed only).
    """

    stock: list[tuple[str, str, int, int]]
    orders: list[Order]
    last_seq: int
    locations: list[Location] = []
    channels: list[Channel] = []
    keys: list[KeyUse] = []
    last_event_seq: int = 0
    #: every product's rules (products with none are left out)
    rules: list[ProductRules] = []
    #: the live per_customer counts: ``(sku, order_id, customer, units)``
    counts: list[tuple[str, str, str, int]] = []


class JournalSink(Protocol):
    """The engine's view of the journal.

    ``append`` is synchronous and never refuses: what is appended is committed in order, in
    batches. ``admit`` is the back-pressure check made *before* new work changes anything: it
    raises Overloaded when the journal is full. A caller that appends right away (no await in
    between) uses ``admit``; one that appends after an await claims a slot in the journal with
    ``claim_slot`` (which admits first) and frees it with ``free_slot`` once it appended (or
    failed), so a burst of callers cannot all pass the check before any of them appends.
    (A slot is a place in the journal's buffer, nothing to do with stock reserved by holds.)

    ``wait_durable`` returns once every event up to ``seq`` is committed (at once in ``fast``
    durability); it may be cancelled, and the change is then still committed, only
    unacknowledged. ``flush`` waits until everything appended so far is committed, in either
    mode (before reading the store).
    """

    def admit(self) -> None: ...

    def claim_slot(self) -> None: ...

    def free_slot(self) -> None: ...

    def is_durable(self, seq: int) -> bool:
        """True when a caller need not wait for ``seq`` (committed, or ``fast`` mode)."""
        ...

    def append(self, events: tuple[Change, ...]) -> int: ...

    async def wait_durable(self, seq: int) -> None: ...

    async def flush(self) -> None: ...

    @property
    def committed_seq(self) -> int: ...

    @property
    def appended_seq(self) -> int:
        """The seq of the newest event appended (committed or not)."""
        ...

    def statistics(self) -> JournalStatistics: ...


class OrderQuery(msgspec.Struct, frozen=True):
    """A page of orders, newest first: ``status`` (None: any), ``created_after`` /
    ``created_before`` (UNIX seconds, exclusive), ``customer`` (None: any), ``after`` (the
    id of the last order of the previous page), at most ``limit``."""

    status: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    after: str | None = None
    limit: int = 100
    customer: str | None = None


def orders_page(orders: Iterable[Order], query: OrderQuery) -> list[Order]:
    """``query``'s page of ``orders`` kept in memory, newest first by ``(created_at, id)``, as
    the SQL stores' indexed query answers it. Raises InvalidRequest when ``after`` names none of
    them."""
    ordered = sorted(orders, key=_newest_first, reverse=True)
    if query.after is not None:
        cursor = next((o for o in ordered if o.id == query.after), None)
        if cursor is None:  # as the stores answer a cursor naming no order
            raise InvalidRequest(f"after: no order {query.after!r}")
        mark = _newest_first(cursor)
        ordered = [o for o in ordered if _newest_first(o) < mark]
    out = []
    for order in ordered:
        t = order.created_at.timestamp()
        if query.status is not None and order.status != query.status:
            continue
        if query.customer is not None and order.customer != query.customer:
            continue
        if query.created_after is not None and t <= query.created_after:
            continue
        if query.created_before is not None and t >= query.created_before:
            continue
        out.append(order)
        if len(out) == query.limit:
            break
    return out


def _newest_first(order: Order) -> tuple[float, str]:
    return order.created_at.timestamp(), order.id


class History(Protocol):
    """Reads of what the store committed, for what the engine no longer keeps in memory.
    Each call may block on the database (off the trio thread) and may be cancelled."""

    async def order(self, order_id: str) -> Order | None: ...

    async def orders(self, query: OrderQuery) -> list[Order]: ...

    async def movements(self, sku: str, after: int | None, limit: int) -> list[Movement]:
        """``sku``'s movements after seq ``after`` in ``(seq, location)`` order: the first
        ``limit``, and the rest of the last one's seq (a page never splits a seq)."""
        ...

    async def events(
        self, after: int, limit: int, types: tuple[str, ...] | None = None
    ) -> list[FeedEvent]:
        """Up to ``limit`` change-feed events after ``after``, in seq order."""
        ...

    async def feed_bounds(self) -> tuple[int, int]:
        """``(first, last)``: the oldest and newest seq the feed still keeps (first is last + 1
        when it keeps none)."""
        ...
