"""Hypothesis drives the pure ledgers, the location table and the order book with every mix of
commands and time, as the engine does (the same pure planning functions for cart edits), late
payments and partial returns included; replaying the events must give the same state, and the
books check must find nothing in it."""

from datetime import UTC, datetime

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from stockade import InvalidRequest, InvalidTransition, OutOfStock
from stockade.engine.cartplan import growth, settle
from stockade.engine.changes import Change
from stockade.engine.commands import (
    Adjust,
    Confirm,
    GiveBack,
    Release,
    Return,
    SetStock,
    Take,
    Transfer,
)
from stockade.engine.ledger import ProductLedger
from stockade.engine.locations import LocationTable
from stockade.engine.orders import OrderBook
from stockade.persistence.audit import check_state
from stockade.persistence.books import Tally
from stockade.persistence.journal import Batch
from stockade.persistence.memory import StoreState

SKUS = ["a", "b", "c"]
LOCATIONS = ["default", "n", "s"]
T0 = 1_700_000_000.0
WHERE = [None, frozenset({"n", "s"}), frozenset({"default"})]


class LedgerMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.table = LocationTable()
        self.events: list[Change] = []
        for priority, location in enumerate(LOCATIONS[1:], 1):
            self.emit(self.table.set_location(location, "", priority, True, T0)[1])
        self.ledgers = {sku: ProductLedger(sku) for sku in SKUS}
        self.book = OrderBook(key_ttl_s=3600, max_lifetime_s=200)
        self.where: dict[str, frozenset[str] | None] = {}
        self.next_id = 0
        self.on_hand_expected = dict.fromkeys(SKUS, 0)

    def emit(self, event: Change | None) -> None:
        if event is not None:
            self.events.append(event)

    def apply(self, sku: str, command: object) -> object:
        return self.ledgers[sku].apply(command, self.now, self.table)  # type: ignore[arg-type]

    @initialize(units=st.lists(st.integers(0, 12), min_size=9, max_size=9))
    def stock_up(self, units):
        """Start with some stock at every (sku, location), so that orders (and what follows
        them: confirms, late payments, returns) are reached, not only refusals."""
        for i, (sku, location) in enumerate((s, loc) for s in SKUS for loc in LOCATIONS):
            self.set_stock(sku, location, units[i])

    # -- merchant -----------------------------------------------------------------------------

    @rule(
        sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS), on_hand=st.integers(0, 20)
    )
    def set_stock(self, sku, location, on_hand):
        ledger = self.ledgers[sku]
        before, reserved = ledger.site(location)
        try:
            reply = self.apply(sku, SetStock(on_hand, location))
        except InvalidRequest:
            assert on_hand < reserved
            assert ledger.site(location) == (before, reserved)
            return
        self.on_hand_expected[sku] += on_hand - before
        self.emit(reply[1])  # type: ignore[index]

    @rule(sku=st.sampled_from(SKUS), location=st.sampled_from(LOCATIONS),
          delta=st.integers(-10, 10).filter(bool))  # fmt: skip
    def adjust(self, sku, location, delta):
        ledger = self.ledgers[sku]
        before = ledger.site(location)
        try:
            reply = self.apply(sku, Adjust(delta, "count", location))
        except InvalidRequest:
            assert before[0] + delta < before[1]
            assert ledger.site(location) == before
            return
        self.on_hand_expected[sku] += delta
        self.emit(reply[1])  # type: ignore[index]

    @rule(sku=st.sampled_from(SKUS), qty=st.integers(1, 8),
          pair=st.permutations(LOCATIONS).map(lambda p: p[:2]))  # fmt: skip
    def transfer(self, sku, qty, pair):
        source, destination = pair
        ledger = self.ledgers[sku]
        before = {loc: ledger.site(loc) for loc in LOCATIONS}
        try:
            reply = self.apply(sku, Transfer(qty, source, destination, ""))
        except OutOfStock:
            assert before[source][0] - before[source][1] < qty
            assert {loc: ledger.site(loc) for loc in LOCATIONS} == before
            return
        self.emit(reply[1])  # type: ignore[index]

    @rule(location=st.sampled_from(LOCATIONS), active=st.booleans())
    def activate(self, location, active):
        current = self.table.locations[location]
        _, event, _ = self.table.set_location(location, "", current.priority, active, self.now)
        self.emit(event)

    # -- orders -------------------------------------------------------------------------------

    @rule(
        target=orders,
        lines=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 6), min_size=1),
        hold_s=st.one_of(st.none(), st.floats(1, 100)),
        where=st.sampled_from(WHERE),
    )
    def place(self, lines, hold_s, where):
        self.next_id += 1
        order_id = f"o{self.next_id}"
        lines = dict(sorted(lines.items()))
        hold = hold_s is not None
        replies = {
            sku: self.apply(sku, Take(order_id=order_id, qty=qty, hold=hold, where=where))
            for sku, qty in lines.items()
        }
        if not all(type(r) is dict for r in replies.values()):  # all or nothing
            for sku, reply in replies.items():
                if type(reply) is dict:
                    self.apply(sku, GiveBack(order_id=order_id, allocation=reply, hold=hold))
                else:
                    assert self.ledgers[sku].available(self.table, where) == reply < lines[sku]
            return order_id
        created = datetime.fromtimestamp(self.now, UTC)
        expires = self.now + hold_s if hold_s is not None else None
        taken: dict[str, dict[str, int]] = replies  # type: ignore[assignment]
        _, event = self.book.place(order_id, lines, taken, self.now, created, expires, None)
        if not hold:
            for sku, qty in lines.items():
                self.on_hand_expected[sku] -= qty
        self.where[order_id] = where
        self.emit(event)
        return order_id

    @rule(order_id=orders)
    def confirm(self, order_id):
        if order_id not in self.book.orders:
            return
        try:
            order, event = self.book.confirm(order_id, self.now)
        except InvalidTransition:
            assert self.book.orders[order_id].status in ("cancelled", "expired") or (
                self.book.lapsed(order_id, self.now)
            )
            return
        if event is not None:
            for sku, qty in order.lines.items():
                self.apply(sku, Confirm(order_id))
                self.on_hand_expected[sku] -= qty
        self.emit(event)

    @rule(order_id=orders)
    def cancel(self, order_id):
        if order_id not in self.book.orders:
            return
        order, event = self.book.cancel(order_id, self.now)
        if event is not None:
            if event.was == "reserved":
                for sku in order.lines:
                    self.apply(sku, Release(order_id))
            else:  # a return of every unit not back yet
                back = order.allocations if event.moves is None else event.moves
                for sku, allocation in back.items():
                    self.apply(sku, Return(order_id, allocation))
                    self.on_hand_expected[sku] += sum(allocation.values())
        self.emit(event)

    @rule(order_id=orders)
    def confirm_late(self, order_id):
        """A payment after the hold expired: its units taken again, sold, all or nothing."""
        order = self.book.orders.get(order_id)
        if order is None or order.status != "expired":
            return
        where = self.where[order_id]
        before = {sku: (ledger.on_hand, ledger.reserved) for sku, ledger in self.ledgers.items()}
        replies = {
            sku: self.apply(sku, Take(order_id=order_id, qty=qty, hold=False, where=where))
            for sku, qty in order.lines.items()
        }
        if not all(type(r) is dict for r in replies.values()):
            for sku, reply in replies.items():
                if type(reply) is dict:
                    self.apply(sku, GiveBack(order_id=order_id, allocation=reply, hold=False))
            after = {sku: (ledger.on_hand, ledger.reserved) for sku, ledger in self.ledgers.items()}
            assert after == before  # refused: nothing moved
            return
        taken: dict[str, dict[str, int]] = replies  # type: ignore[assignment]
        confirmed, event = self.book.confirm_late(order_id, taken, self.now)
        assert confirmed.status == "confirmed" and confirmed.allocations == taken
        for sku, qty in order.lines.items():
            self.on_hand_expected[sku] -= qty
        self.emit(event)

    @rule(order_id=orders,
          lines=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 4), min_size=1),
          restock=st.booleans())  # fmt: skip
    def return_units(self, order_id, lines, restock):
        order = self.book.orders.get(order_id)
        if order is None:
            return
        try:
            _, event = self.book.return_units(order_id, lines, restock, self.now)
        except (InvalidTransition, InvalidRequest):
            assert self.book.orders[order_id] is order  # refused: nothing changed
            left = {sku: order.lines.get(sku, 0) - order.returned.get(sku, 0) for sku in lines}
            assert order.status != "confirmed" or any(qty > left[sku] for sku, qty in lines.items())
            return
        assert order.status == "confirmed"
        for sku, allocation in event.moves.items():
            assert sum(allocation.values()) == lines[sku]
            self.apply(sku, Return(order_id, allocation, restock))
            if restock:
                self.on_hand_expected[sku] += lines[sku]
        self.emit(event)

    @rule(order_id=orders,
          lines=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 6), min_size=1))  # fmt: skip
    def change(self, order_id, lines):
        if order_id not in self.book.orders:
            return
        lines = dict(sorted(lines.items()))
        try:
            order = self.book.check_open(order_id, self.now, "change")
        except InvalidTransition:
            return
        before = {sku: (ledger.on_hand, ledger.reserved) for sku, ledger in self.ledgers.items()}
        grow = growth(order.lines, lines)
        where = self.where[order_id]
        replies = {
            sku: self.apply(sku, Take(order_id=order_id, qty=qty, hold=True, where=where))
            for sku, qty in grow.items()
        }
        if not all(type(r) is dict for r in replies.values()):
            for sku, reply in replies.items():
                if type(reply) is dict:
                    self.apply(sku, GiveBack(order_id=order_id, allocation=reply, hold=True))
            after = {sku: (ledger.on_hand, ledger.reserved) for sku, ledger in self.ledgers.items()}
            assert after == before  # a short edit leaves every product as it was
            return
        taken: dict[str, dict[str, int]] = replies  # type: ignore[assignment]
        allocations, moves, releases = settle(
            order.lines, order.allocations, lines, taken, self.table.rank()
        )
        _, event = self.book.change(order_id, lines, allocations, moves, self.now)
        for sku, part in releases:
            self.apply(sku, Release(order_id, part))
        self.emit(event)

    @rule(order_id=orders, hold_s=st.floats(1, 150))
    def extend(self, order_id, hold_s):
        if order_id not in self.book.orders:
            return
        try:
            order, event = self.book.extend(order_id, hold_s, self.now)
        except InvalidTransition:
            return
        assert order.expires_at is not None
        assert order.expires_at.timestamp() <= order.created_at.timestamp() + 200 + 1e-6
        self.emit(event)

    @rule(seconds=st.floats(0, 60))
    def time_passes(self, seconds):
        self.now += seconds
        for _, order_id in sorted(self.book.open_holds()):
            result = self.book.expire(order_id, self.now)
            if result is not None:
                for sku in result[0].lines:
                    self.apply(sku, Release(order_id))
                self.emit(result[1])

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def every_location_keeps_reserved_within_on_hand(self):
        for ledger in self.ledgers.values():
            sites = [ledger.site(loc) for loc in LOCATIONS]
            for on_hand, reserved in sites:
                assert 0 <= reserved <= on_hand
            assert ledger.on_hand == sum(s[0] for s in sites)
            assert ledger.reserved == sum(s[1] for s in sites)

    @invariant()
    def available_counts_active_locations_only(self):
        for ledger in self.ledgers.values():
            active = [ledger.site(loc) for loc in LOCATIONS if self.table.is_active(loc)]
            assert ledger.level(self.table).available == sum(h - r for h, r in active)

    @invariant()
    def holds_are_the_reserved_orders_allocations(self):
        held: dict[tuple[str, str], int] = {}
        for order in self.book.orders.values():
            assert set(order.allocations) == set(order.lines)
            for sku, allocation in order.allocations.items():
                assert sum(allocation.values()) == order.lines[sku]
                if order.status == "reserved":
                    assert self.ledgers[sku].holds is not None
                    assert self.ledgers[sku].holds[order.id] == allocation  # type: ignore[index]
                    for loc, qty in allocation.items():
                        held[sku, loc] = held.get((sku, loc), 0) + qty
        for sku, ledger in self.ledgers.items():
            for loc in LOCATIONS:
                assert ledger.site(loc)[1] == held.get((sku, loc), 0)

    @invariant()
    def returns_never_pass_what_was_bought(self):
        for order in self.book.orders.values():
            for sku, qty in order.lines.items():
                lost = order.written_off.get(sku, 0)
                assert 0 <= lost <= order.returned.get(sku, 0) <= qty
            every = all(order.returned.get(s, 0) == q for s, q in order.lines.items())
            if order.returned:
                assert order.status == ("cancelled" if every else "confirmed")

    @invariant()
    def units_are_conserved(self):
        for sku, ledger in self.ledgers.items():
            assert ledger.on_hand == self.on_hand_expected[sku]

    @invariant()
    def replaying_the_events_gives_the_same_state(self):
        replica = StoreState(keep_movements=True)
        if self.events:
            replica.apply_batch(Batch(1, len(self.events), list(self.events)))
        for sku, ledger in self.ledgers.items():
            for loc in LOCATIONS:
                assert replica.stock.get((sku, loc), (0, 0)) == ledger.site(loc)
        assert replica.orders == self.book.orders
        report = check_state(replica, Tally())  # the books check finds nothing
        assert report.balanced, report.findings
        for loc in LOCATIONS:  # ("default" is in the table from the start)
            stored = replica.locations.get(loc)
            assert (stored is None or stored.active) == self.table.is_active(loc)


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
