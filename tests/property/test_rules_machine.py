"""The per_customer counts under every interleaving (design.md §13).

* A hypothesis state machine feeds one product's pure ledger holds, purchases, cart growth and
  shrinking, confirms, cancels, returns (whole and partial), expiry, gives-back and rules
  replaced, as the engine does: the counts never pass the limit, equal what the model's orders
  say, and the Counted/RulesSet changes the ledger leaves for the journal, folded into a store
  as a commit would, give the same counts.
* Hundreds of concurrent shoppers of a few customers on the real engine (mock clock): holds,
  direct purchases, cart edits, confirms, cancels, returns and expiries of a product with a
  per_customer limit; the counts never pass the limit between moves and at the end equal the
  orders'; the store's rows equal the engine's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import stockade
from stockade import Engine, InvalidTransition, LimitExceeded, Order, OutOfStock
from stockade.engine.changes import Change
from stockade.engine.commands import Confirm, GiveBack, Release, Return, SetRules, Take
from stockade.engine.ledger import ProductLedger
from stockade.engine.locations import LocationTable
from stockade.engine.models import ProductRules
from stockade.engine.rules import Refused
from stockade.persistence.journal import Batch
from stockade.persistence.memory import StoreState
from tests.fakes import CheckingStore

CUSTOMERS = ["ann", "bob", "cy"]


@dataclass
class Modelled:
    """An order as the model sees it: its customer, held or sold, its units of "a" and how
    many of them count against the customer."""

    customer: str | None
    status: str
    units: int
    counted: int


T0 = 1_700_000_000.0


class RulesMachine(RuleBasedStateMachine):
    """One product "a" with 1000 units; the model keeps each order's units and counted units."""

    def __init__(self) -> None:
        super().__init__()
        self.table = LocationTable()
        self.ledger = ProductLedger("a", on_hand=1000)
        self.now = T0
        self.limit: int | None = None
        self.orders: dict[str, Modelled] = {}
        self.next_id = 0
        self.events: list[Change] = []

    def apply(self, command: object) -> object:
        reply = self.ledger.apply(command, self.now, self.table)  # type: ignore[arg-type]
        if type(reply) is tuple:
            self.events.append(reply[1])
        if self.ledger.rules is not None:
            self.events.extend(self.ledger.rules.drain())
        return reply

    def live(self, status: str | None = None) -> list[str]:
        return [oid for oid, o in self.orders.items() if status is None or o.status == status]

    def uncount(self, oid: str, units: int) -> None:
        order = self.orders[oid]
        order.counted = max(order.counted - units, 0)

    # -- rules --------------------------------------------------------------------------------

    @rule(limit=st.none() | st.integers(1, 8), per_order=st.none() | st.integers(1, 5))
    def set_rules(self, limit, per_order):
        self.apply(SetRules(ProductRules(sku="a", per_customer=limit, per_order=per_order)))
        if limit != self.limit:
            for order in self.orders.values():
                order.counted = 0  # counting restarts
        self.limit = limit
        self.per_order = per_order

    # -- orders -------------------------------------------------------------------------------

    @rule(customer=st.sampled_from([*CUSTOMERS, None]), qty=st.integers(1, 4), hold=st.booleans(),
          other_line_short=st.booleans())  # fmt: skip
    def place(self, customer, qty, hold, other_line_short):
        oid = f"o{self.next_id}"
        self.next_id += 1
        reply = self.apply(Take(order_id=oid, qty=qty, hold=hold, customer=customer))
        if type(reply) is Refused:
            return
        assert type(reply) is dict
        counted = qty if self.limit is not None and customer is not None else 0
        if other_line_short:  # another line of the order was short: this one is given back
            self.apply(GiveBack(order_id=oid, allocation=reply, hold=hold))
            return
        self.orders[oid] = Modelled(customer, "held" if hold else "sold", qty, counted)

    @precondition(lambda self: self.live("held"))
    @rule(data=st.data(), delta=st.integers(-3, 3).filter(bool))
    def change(self, data, delta):
        oid = data.draw(st.sampled_from(self.live("held")))
        order = self.orders[oid]
        units = order.units
        if delta > 0:
            reply = self.apply(Take(order_id=oid, qty=delta, hold=True, customer=order.customer,
                                    line=units + delta))  # fmt: skip
            if type(reply) is dict:
                order.units = units + delta
                if self.limit is not None and order.customer is not None:
                    order.counted += delta
        elif units + delta >= 1:
            self.apply(Release(oid, {"default": -delta}))
            order.units = units + delta
            self.uncount(oid, -delta)

    @precondition(lambda self: self.live("held"))
    @rule(data=st.data())
    def confirm(self, data):
        oid = data.draw(st.sampled_from(self.live("held")))
        self.apply(Confirm(oid))
        self.orders[oid].status = "sold"

    @precondition(lambda self: self.live("held"))
    @rule(data=st.data())
    def release(self, data):  # a cancel or an expiry: the same to the ledger
        oid = data.draw(st.sampled_from(self.live("held")))
        self.apply(Release(oid))
        del self.orders[oid]

    @precondition(lambda self: self.live("sold"))
    @rule(data=st.data(), part=st.integers(1, 4))
    def return_units(self, data, part):
        oid = data.draw(st.sampled_from(self.live("sold")))
        order = self.orders[oid]
        back = min(part, order.units)
        self.apply(Return(oid, {"default": back}))
        self.uncount(oid, back)
        if back == order.units:
            del self.orders[oid]
        else:
            order.units -= back

    @rule(seconds=st.floats(0, 100))
    def tick(self, seconds):
        self.now += seconds

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def counts_are_the_orders_and_within_the_limit(self):
        state = self.ledger.rules
        expected: dict[str, int] = {}
        for order in self.orders.values():
            if order.customer is not None and order.counted:
                expected[order.customer] = expected.get(order.customer, 0) + order.counted
        if self.limit is None:
            assert state is None or state.counts == {}
            return
        assert state is not None
        assert state.counts == expected
        assert all(units <= self.limit for units in state.counts.values())

    @invariant()
    def the_journaled_counts_are_the_ledgers(self):
        store = StoreState()
        if self.events:
            store.apply_batch(Batch(1, len(self.events), list(self.events)))
        stored: dict[str, int] = {}
        for (_, _), (customer, units) in store.counts.items():
            stored[customer] = stored.get(customer, 0) + units
        state = self.ledger.rules
        assert stored == ({} if state is None else state.counts)


RulesMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                          deadline=None)  # fmt: skip
TestRulesMachine = RulesMachine.TestCase


# -- the real engine, many shoppers at once -----------------------------------------------------


def counts(engine: Engine) -> dict[str, int]:
    state = engine._ledgers["a"].rules
    assert state is not None
    return dict(state.counts)


def orders_say(orders: dict[str, Order]) -> dict[str, int]:
    """What the orders say each customer holds or has bought of "a" (all placed under the rule,
    none partly returned)."""
    out: dict[str, int] = {}
    for order in orders.values():
        if order.status in ("reserved", "confirmed") and order.customer and "a" in order.lines:
            out[order.customer] = out.get(order.customer, 0) + order.lines["a"]
    return out


@pytest.mark.parametrize("seed", range(4))
async def test_concurrent_shoppers_never_pass_their_limit(seed, autojump_clock):
    rng = random.Random(seed)
    store = CheckingStore()
    seen = dict.fromkeys(("placed", "limit", "changed", "confirmed", "cancelled", "returned",
                          "expired"), 0)  # fmt: skip
    latest: dict[str, Order] = {}
    limit = 4
    async with stockade.open_engine(store=store, durability="durable") as engine:
        await engine.set_stock("a", 400)
        await engine.set_stock("b", 400)
        await engine.set_rules("a", per_customer=limit)

        async def shopper(n: int) -> None:
            customer = f"c{rng.randrange(12)}"
            await trio.sleep(rng.random() * 60)
            lines = {"a": rng.randint(1, 3)} | ({"b": 1} if rng.random() < 0.5 else {})
            hold = rng.random() < 0.7
            try:
                order = await engine.place_order(
                    lines, hold_for=rng.uniform(2, 15) if hold else None, customer=customer
                )
            except LimitExceeded:
                seen["limit"] += 1
                return
            seen["placed"] += 1
            latest[order.id] = order
            for _ in range(rng.randint(0, 3)):
                await trio.sleep(rng.random() * 5)
                action = rng.choice(["grow", "shrink", "confirm", "cancel"])
                try:
                    if action in ("grow", "shrink") and order.status == "reserved":
                        qty = max(1, order.lines["a"] + (1 if action == "grow" else -1))
                        order = await engine.change_order(order.id, {**order.lines, "a": qty})
                        seen["changed"] += 1
                    elif action == "confirm" and order.status == "reserved":
                        order = await engine.confirm(order.id)
                        seen["confirmed"] += 1
                    elif action == "cancel":
                        was = order.status
                        order = await engine.cancel(order.id)
                        seen["returned" if was == "confirmed" else "cancelled"] += 1
                except LimitExceeded:
                    seen["limit"] += 1
                except InvalidTransition:  # the hold lapsed first
                    order = await engine.get_order(order.id)
                except OutOfStock:  # pragma: no cover - 400 units never run short here
                    raise
                latest[order.id] = order

        async def watch() -> None:
            while True:
                await trio.sleep(0.25)
                assert all(units <= limit for units in counts(engine).values())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as shoppers:
                for n in range(150):
                    shoppers.start_soon(shopper, n)
            await trio.sleep(30)  # every hold left open lapses
            nursery.cancel_scope.cancel()
        final = {oid: await engine.get_order(oid) for oid in latest}
        seen["expired"] = sum(o.status == "expired" for o in final.values())
        assert counts(engine) == orders_say(final)
        await engine._journal.flush()
        stored: dict[str, int] = {}
        for (_, _), (customer, units) in store.state.counts.items():
            stored[customer] = stored.get(customer, 0) + units
        assert stored == counts(engine)
    assert all(v > 0 for v in seen.values()), seen
