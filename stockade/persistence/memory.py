"""A store in memory: what a database would hold, kept in this process (tests, benches).

:class:`StoreState` applies committed batches the way every store must (through the same
:func:`~stockade.persistence.rows.batch_rows` fold as the SQL stores): stock per (sku, location)
from the movements' deltas, orders by id, idempotency-key uses, locations and channels, and
optionally the append-only movements ledger.
"""

from __future__ import annotations

import bisect

import trio

from stockade.engine.feed import EventRow, event_from_row
from stockade.engine.models import Channel, KeyUse, Location, Movement, Order, ProductRules
from stockade.engine.models import Event as FeedEvent
from stockade.engine.storage import OrderQuery, Snapshot, orders_page
from stockade.errors import CorruptStore
from stockade.persistence.journal import Batch, is_new_batch
from stockade.persistence.keys import MemoryKeys
from stockade.persistence.outbox import feed_events, flipped, low_stock_rules
from stockade.persistence.rows import (
    BatchRows,
    batch_rows,
    key_from_row,
    order_from_row,
    rules_from_row,
)
from stockade.persistence.sinks import SinkRecord
from stockade.persistence.subscriptions import MemoryTable
from stockade.persistence.webhooks import MemoryWebhooks

__all__ = ["MemoryStore", "StoreState"]


class StoreState:
    """What a store holds after the batches applied to it."""

    def __init__(self, *, keep_movements: bool = False, feed: bool = True) -> None:
        self.feed = feed
        self.events: list[EventRow] = []
        self.last_event_seq = 0
        self.stock: dict[tuple[str, str], tuple[int, int]] = {}
        self.orders: dict[str, Order] = {}
        self.keys: dict[str, KeyUse] = {}
        self.locations: dict[str, Location] = {}
        self.channels: dict[str, Channel] = {}
        self.movements: list[Movement] | None = [] if keep_movements else None
        self.last_seq = 0
        self.rules: dict[str, ProductRules] = {}
        #: (sku, order_id) -> (customer, units)
        self.counts: dict[tuple[str, str], tuple[str, int]] = {}

    @property
    def products(self) -> dict[str, tuple[int, int]]:
        """Each product's ``(on_hand, reserved)`` summed over its locations."""
        totals: dict[str, tuple[int, int]] = {}
        for (sku, _), (on_hand, reserved) in self.stock.items():
            before = totals.get(sku, (0, 0))
            totals[sku] = (before[0] + on_hand, before[1] + reserved)
        return totals

    def apply_batch(self, batch: Batch) -> list[EventRow]:
        if not is_new_batch(batch.first_seq, batch.last_seq, self.last_seq):
            return []  # already applied: a retried commit must not double a movement
        rows = batch_rows(batch)
        before = {loc.id for loc in self.locations.values() if not loc.active}
        self.apply_rows(rows)
        if not self.feed:
            return []
        toggled = flipped(rows.locations, before)
        touched = {sku for sku, _, _, _ in rows.stock_deltas}
        touched.update(sku for sku, location in self.stock if location in toggled)
        after: dict[str, dict[str, tuple[int, int]]] = {}
        for (sku, location), values in self.stock.items():
            if sku in touched:
                after.setdefault(sku, {})[location] = values
        events = feed_events(
            batch.events, rows.stock_deltas, after, before ^ toggled, self.last_event_seq + 1,
            low_stock_rules(self.rules.values()), inactive_before=before,
        )  # fmt: skip
        self.events.extend(events)
        if events:
            self.last_event_seq = events[-1][0]
        return events

    def apply_rows(self, rows: BatchRows) -> None:
        """Apply a batch's rows, or (as the SQL schema would) refuse them whole with
        CorruptStore: stock out of its bounds, an order placed twice."""
        self._check(rows)
        stock = self.stock
        for sku, location, d_on_hand, d_reserved in rows.stock_deltas:
            on_hand, reserved = stock.get((sku, location), (0, 0))
            stock[sku, location] = (on_hand + d_on_hand, reserved + d_reserved)
        if self.movements is not None:
            self.movements.extend(Movement(*row) for row in rows.movements)
        for row in rows.new_orders:
            self.orders[row[0]] = order_from_row(row)
        for row in rows.updated_orders:
            self.orders[row[0]] = order_from_row(row)
        for key_row in rows.keys:
            use = key_from_row(key_row)
            self.keys[use.key] = use
        for place in rows.locations:
            self.locations[place.id] = place
        for channel in rows.channels:
            self.channels[channel.id] = channel
        for rules_row in rows.rules:
            rules = rules_from_row(rules_row)
            if rules.empty:
                self.rules.pop(rules.sku, None)
            else:
                self.rules[rules.sku] = rules
        for sku in rows.cleared:
            for pair in [pair for pair in self.counts if pair[0] == sku]:
                del self.counts[pair]
        for sku, order_id, customer, units in rows.counts:
            if units > 0:
                self.counts[sku, order_id] = (customer, units)
            else:
                self.counts.pop((sku, order_id), None)
        for sku, order_id, cap in rows.caps:
            counted = self.counts.get((sku, order_id))
            if counted is not None and counted[1] > cap:
                self.counts[sku, order_id] = (counted[0], cap)
        self.last_seq = rows.last_seq

    def _check(self, rows: BatchRows) -> None:
        for sku, location, d_on_hand, d_reserved in rows.stock_deltas:
            on_hand, reserved = self.stock.get((sku, location), (0, 0))
            on_hand, reserved = on_hand + d_on_hand, reserved + d_reserved
            if not 0 <= reserved <= on_hand:
                raise CorruptStore(
                    f"{sku!r} at {location!r} would have on_hand {on_hand}, reserved {reserved}"
                )
        for row in rows.new_orders:
            if row[0] in self.orders:
                raise CorruptStore(f"order {row[0]!r} is placed twice")

    def snapshot(self, since: float) -> Snapshot:
        keys = [use for use in self.keys.values() if use.at > since]
        named = {use.order_id for use in keys}
        return Snapshot(
            stock=[(sku, loc, v[0], v[1]) for (sku, loc), v in self.stock.items()],
            orders=[order for order in self.orders.values() if _loaded(order, since, named)],
            last_seq=self.last_seq,
            locations=list(self.locations.values()),
            channels=list(self.channels.values()),
            keys=keys,
            last_event_seq=self.last_event_seq,
            rules=list(self.rules.values()),
            counts=[
                (sku, order_id, customer, units)
                for (sku, order_id), (customer, units) in self.counts.items()
                if order_id in self.orders
                and self.orders[order_id].status in ("reserved", "confirmed")
            ],
        )

    def page(self, query: OrderQuery) -> list[Order]:
        """A page of orders, newest first (what the SQL stores' indexed query answers)."""
        return orders_page(self.orders.values(), query)


def _loaded(order: Order, since: float, named: set[str]) -> bool:
    """Whether start-up loads ``order``: open, inside the window, or named by a key."""
    return order.status == "reserved" or order.created_at.timestamp() > since or order.id in named


class MemoryStore:
    """Keeps committed state in this process. Reusable across engines in one process, so a
    second ``open_engine(store=...)`` starts from what the first committed.

    With ``keep_state=False`` (what ``open_engine(None)`` uses) it keeps nothing and only counts
    the events: the engine itself already holds the state (and, having no history to read
    back from, keeps every order in memory), and copying it would only slow a store that
    cannot survive the process anyway. It keeps the API keys a server made
    (``key_table()``) either way.
    """

    def __init__(
        self, *, keep_state: bool = True, keep_movements: bool = False, feed: bool = True
    ) -> None:
        self.state = StoreState(keep_movements=keep_movements, feed=feed and keep_state)
        self.keep_state = keep_state
        self.keeps_history = keep_state
        self.keys = MemoryKeys()
        self.webhooks = MemoryWebhooks()
        self.sinks: MemoryTable[SinkRecord] = MemoryTable()

    def key_table(self) -> MemoryKeys:
        """The store's API keys (kept whatever ``keep_state`` says: a handful of rows)."""
        return self.keys

    def webhook_table(self) -> MemoryWebhooks:
        """The store's webhook subscriptions (kept whatever ``keep_state`` says)."""
        return self.webhooks

    def sink_table(self) -> MemoryTable[SinkRecord]:
        """The store's broker sinks (kept whatever ``keep_state`` says)."""
        return self.sinks

    async def migrate(self) -> None:
        await trio.lowlevel.checkpoint()  # nothing to migrate in memory

    async def load(self, since: float) -> Snapshot:
        await trio.lowlevel.checkpoint()
        return self.state.snapshot(since)

    async def commit(self, batch: Batch) -> list[EventRow]:
        await trio.lowlevel.checkpoint()
        if self.keep_state:
            return self.state.apply_batch(batch)
        self.state.last_seq = batch.last_seq
        return []

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    # -- history ------------------------------------------------------------------------------

    async def order(self, order_id: str) -> Order | None:
        await trio.lowlevel.checkpoint()
        return self.state.orders.get(order_id)

    async def orders(self, query: OrderQuery) -> list[Order]:
        await trio.lowlevel.checkpoint()
        return self.state.page(query)

    async def movements(self, sku: str, after: int | None, limit: int) -> list[Movement]:
        await trio.lowlevel.checkpoint()
        ledger = self.state.movements or []
        start = 0 if after is None else after
        found = [m for m in ledger if m.sku == sku and m.seq > start]
        found.sort(key=lambda m: (m.seq, m.location))  # as the SQL stores order them
        if len(found) > limit:  # as they page: never splitting one change's rows
            last = found[limit - 1].seq
            return [m for m in found if m.seq <= last]
        return found

    async def events(
        self, after: int, limit: int, types: tuple[str, ...] | None = None
    ) -> list[FeedEvent]:
        await trio.lowlevel.checkpoint()
        events = self.state.events
        start = bisect.bisect_right(events, after, key=lambda e: e[0])
        out = []
        for row in events[start:]:
            if types is None or row[1] in types:
                out.append(event_from_row(row))
                if len(out) == limit:
                    break
        return out

    async def feed_bounds(self) -> tuple[int, int]:
        await trio.lowlevel.checkpoint()
        state = self.state
        first = state.events[0][0] if state.events else state.last_event_seq + 1
        return first, state.last_event_seq

    async def prune_events(self, before: float, limit: int) -> int:
        await trio.lowlevel.checkpoint()
        events = self.state.events
        count = 0
        while count < limit and count < len(events) and events[count][2] < before:
            count += 1
        del events[:count]
        return count
