"""Hypothesis drives the pure ledgers and order book with every mix of commands and time."""

from datetime import UTC, datetime

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from stockade import InvalidRequest, InvalidTransition
from stockade.engine.commands import Adjust, Confirm, GiveBack, Release, Return, SetStock, Take
from stockade.engine.events import Event
from stockade.engine.ledger import ProductLedger
from stockade.engine.orders import OrderBook
from stockade.persistence.journal import Batch
from stockade.persistence.memory import StoreState

SKUS = ["a", "b", "c"]
T0 = 1_700_000_000.0


class LedgerMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.ledgers = {sku: ProductLedger(sku) for sku in SKUS}
        self.book = OrderBook(key_ttl_s=3600)
        self.events: list[Event] = []
        self.next_id = 0

    def emit(self, event: Event | None) -> None:
        if event is not None:
            self.events.append(event)

    @rule(sku=st.sampled_from(SKUS), on_hand=st.integers(0, 20))
    def set_stock(self, sku, on_hand):
        ledger = self.ledgers[sku]
        if on_hand < ledger.reserved:
            try:
                ledger.apply(SetStock(on_hand), self.now)
            except InvalidRequest:
                return
            raise AssertionError("set_stock below reserved was accepted")
        reply = ledger.apply(SetStock(on_hand), self.now)
        assert isinstance(reply, tuple)
        self.emit(reply[1])

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-10, 10).filter(bool))
    def adjust(self, sku, delta):
        ledger = self.ledgers[sku]
        before = (ledger.on_hand, ledger.reserved)
        try:
            reply = ledger.apply(Adjust(delta, "count"), self.now)
        except InvalidRequest:
            assert before[0] + delta < before[1]
            assert (ledger.on_hand, ledger.reserved) == before
            return
        assert isinstance(reply, tuple)
        self.emit(reply[1])

    @rule(
        target=orders,
        lines=st.dictionaries(st.sampled_from(SKUS), st.integers(1, 6), min_size=1),
        hold_s=st.one_of(st.none(), st.floats(1, 100)),
    )
    def place(self, lines, hold_s):
        self.next_id += 1
        order_id = f"o{self.next_id}"
        lines = dict(sorted(lines.items()))
        hold = hold_s is not None
        taken = []
        for sku, qty in lines.items():
            if (
                self.ledgers[sku].apply(Take(order_id=order_id, qty=qty, hold=hold), self.now)
                is None
            ):
                taken.append((sku, qty))
        if len(taken) < len(lines):  # all or nothing
            for sku, qty in taken:
                self.ledgers[sku].apply(GiveBack(order_id=order_id, qty=qty, hold=hold), self.now)
            return order_id
        created = datetime.fromtimestamp(self.now, UTC)
        expires = self.now + hold_s if hold_s is not None else None
        _, event = self.book.place(order_id, lines, self.now, created, expires, None)
        self.emit(event)
        return order_id

    def _lines(self, order_id):
        return self.book.orders[order_id].lines

    @rule(order_id=orders)
    def confirm(self, order_id):
        if order_id not in self.book.orders:
            return
        try:
            _, event = self.book.confirm(order_id, self.now)
        except InvalidTransition:
            assert self.book.orders[order_id].status in ("cancelled", "expired") or (
                self.book.lapsed(order_id, self.now)
            )
            return
        if event is not None:
            for sku in event.lines:
                self.ledgers[sku].apply(Confirm(order_id), self.now)
        self.emit(event)

    @rule(order_id=orders)
    def cancel(self, order_id):
        if order_id not in self.book.orders:
            return
        _, event = self.book.cancel(order_id, self.now)
        if event is not None:
            for sku, qty in event.lines.items():
                command = Release(order_id) if event.was == "reserved" else Return(order_id, qty)
                self.ledgers[sku].apply(command, self.now)
        self.emit(event)

    @rule(seconds=st.floats(0, 60))
    def time_passes(self, seconds):
        self.now += seconds
        for _, order_id in sorted(self.book.open_holds()):
            result = self.book.expire(order_id, self.now)
            if result is not None:
                for sku in result[0].lines:
                    self.ledgers[sku].apply(Release(order_id), self.now)
                self.emit(result[1])

    @invariant()
    def stock_never_oversold(self):
        for ledger in self.ledgers.values():
            assert 0 <= ledger.reserved <= ledger.on_hand
            assert ledger.reserved == sum((ledger.holds or {}).values())

    @invariant()
    def reservations_add_up_to_reserved(self):
        held = dict.fromkeys(SKUS, 0)
        for order in self.book.orders.values():
            if order.status == "reserved":
                for sku, qty in order.lines.items():
                    held[sku] += qty
        assert held == {sku: ledger.reserved for sku, ledger in self.ledgers.items()}

    @invariant()
    def replaying_the_events_gives_the_same_state(self):
        # One event per batch, and every event in one batch: the fold coalesces a batch
        # (an order placed and moved in it is written once, with its last status).
        one_by_one = StoreState(keep_movements=True)
        for seq, event in enumerate(self.events, 1):
            one_by_one.apply_batch(Batch(seq, seq, [event]))
        at_once = StoreState(keep_movements=True)
        if self.events:
            at_once.apply_batch(Batch(1, len(self.events), list(self.events)))
        for replica in (one_by_one, at_once):
            for sku, ledger in self.ledgers.items():
                assert replica.products.get(sku, (0, 0)) == (ledger.on_hand, ledger.reserved)
            assert replica.orders == self.book.orders
            assert replica.last_seq == len(self.events)
        assert one_by_one.movements == at_once.movements


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
