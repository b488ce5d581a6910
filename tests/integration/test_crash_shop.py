"""kill -9 under the shop's workloads (design.md §7 and §8) on SQLite and PostgreSQL: orders over
five locations and three channels with transfers and deactivations, and carts edited and
extended. After every kill the store's books balance location by location, and every
acknowledged answer is in it; then a restart of the engine over that store finds the same
books. A cart edit or extension in flight at the kill is there whole or not at all."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
import pytest
import trio
import trio.testing

import stockade
from stockade import Location, LocationLevel, Movement, Order
from stockade.persistence.memory import StoreState
from tests.books import (
    assert_holds_match_orders,
    assert_location_books_balance,
    assert_orders_match_movements,
)
from tests.integration.crashes import crash_database, may_have_become, run_and_kill
from tests.integration.shop_crash_worker import CART_SKUS, CHANNELS, LOCATIONS, SKUS
from tests.paging import all_orders

WORKER = "tests.integration.shop_crash_worker"
#: the movements a merchant makes (the rest are orders')
MERCHANT_KINDS = ("set", "adjusted", "transferred")
#: a worker's answer -> the kind of the movements it made
MOVEMENT_OF = {"transfer": "transferred", "adjust": "adjusted"}

_order = msgspec.json.Decoder(Order)
_location = msgspec.json.Decoder(Location)
_text = msgspec.json.Decoder(str)
_edit = msgspec.json.Decoder(tuple[str, dict[str, int]])

#: what a cart's last call in flight at the kill was: the lines of an edit, or an extension
Pending = dict[str, int] | str | None


# -- what a store holds ---------------------------------------------------------------------


def stored_levels(state: StoreState) -> dict[str, list[LocationLevel]]:
    """Each product's LocationLevel at each location the store has a stock row for."""
    levels: dict[str, list[LocationLevel]] = {}
    for (sku, location), (on_hand, reserved) in state.stock.items():
        active = state.locations.get(location, Location(location)).active
        free = on_hand - reserved if active else 0
        levels.setdefault(sku, []).append(
            LocationLevel(sku, location, on_hand, reserved, free, active)
        )
    return levels


def merchant_net(movements: Iterable[Movement]) -> dict[tuple[str, str], int]:
    """What set_stock, adjust_stock and transfers put at each (sku, location), net."""
    net: dict[tuple[str, str], int] = {}
    for m in movements:
        if m.kind in MERCHANT_KINDS:
            net[m.sku, m.location] = net.get((m.sku, m.location), 0) + m.d_on_hand
    return net


def assert_store_balances(state: StoreState) -> None:
    """The stock rows, the orders and the movements ledger agree, location by location: no
    oversell, every reserved unit held by an order that lists it, every sold unit sold by a
    confirmed order, and each order's movements exactly its allocations."""
    assert state.movements is not None
    assert_location_books_balance(
        stored_levels(state),
        state.orders.values(),
        merchant_net(state.movements),
        state.movements,
        stored=state.stock,
    )
    assert_orders_match_movements(state.orders.values(), state.movements)


def assert_restart_balances(database: str, skus: list[str], read: Callable[[], StoreState]) -> None:
    """Open an engine over the store (a restart: lapsed holds are expired as it starts), read
    its books, close it, and check them against what the store then holds. Blocks for it.

    trio's clock stands still in that run (a MockClock that never advances), so no hold lapses
    while the books are read: the engine's view is one instant's."""

    async def books() -> Any:
        async with stockade.open_engine(database) as engine:
            levels = {sku: await engine.stock_by_location(sku) for sku in skus}
            totals = {sku: await engine.stock(sku) for sku in skus}
            orders = await all_orders(engine, 1000)
            assert_holds_match_orders(engine)
            return levels, totals, orders, engine.locations()

    levels, totals, orders, locations = trio.run(books, clock=trio.testing.MockClock())
    state = read()
    assert state.movements is not None
    assert_location_books_balance(
        levels, orders, merchant_net(state.movements), state.movements, totals, state.stock
    )
    assert {o.id: o for o in orders} == state.orders
    assert {location.id: location for location in locations} == state.locations


# -- the location workload ------------------------------------------------------------------


class LocationRuns:
    """What the location workers acknowledged, over every run so far."""

    def __init__(self) -> None:
        #: each order as last acknowledged
        self.orders: dict[str, Order] = {}
        #: the reasons of acknowledged transfers and adjustments -> their movement kind
        self.reasons: dict[str, str] = {}
        #: each location's possible states: as last acknowledged, or as set since, unanswered
        self.locations = {i: {Location(i, priority=p)} for i, p in LOCATIONS.items()}
        #: orders with a late payment or a return in flight, unanswered: "late" or "return"
        self.pending: dict[str, str] = {}
        self.seen = Counter[str]()

    def read(self, lines: list[str]) -> None:
        for line in lines:
            kind, _, payload = line.partition(" ")
            self.seen[kind] += 1
            if kind == "order":
                order = _order.decode(payload)
                self.orders[order.id] = order
                self.pending.pop(order.id, None)
                self.seen["returned"] += bool(order.returned)
            elif kind in ("try-late", "try-return"):
                self.pending[_text.decode(payload)] = kind[4:]
            elif kind == "refused":
                self.pending.pop(_text.decode(payload))
            elif kind in ("transfer", "adjust"):
                self.reasons[_text.decode(payload)] = MOVEMENT_OF[kind]
            elif kind == "try-location":
                location = _location.decode(payload)
                self.locations[location.id].add(location)
            elif kind == "location":
                location = _location.decode(payload)
                self.locations[location.id] = {location}
                self.seen["deactivated"] += not location.active
            else:
                raise AssertionError(line)

    def assert_in(self, state: StoreState, now: datetime) -> None:
        """Every acknowledged answer is in the store."""
        assert state.movements is not None
        for order_id, acked in self.orders.items():
            stored = state.orders.get(order_id)
            assert stored is not None, f"acknowledged order {order_id} lost"
            pending = self.pending.pop(order_id, None)
            assert order_may_be(acked, pending, stored, now), (acked, pending, stored)
            self.orders[order_id] = stored  # what it became is durable now
        rows = Counter((m.reason, m.kind) for m in state.movements if m.reason)
        for reason, kind in self.reasons.items():
            assert rows[reason, kind] == (2 if kind == "transferred" else 1), (reason, kind)
        for location_id, possible in self.locations.items():
            found = state.locations[location_id]
            assert found in possible, (found, possible)
            self.locations[location_id] = {found}  # what it became is durable now


def order_may_be(acked: Order, pending: str | None, stored: Order, now: datetime) -> bool:
    """Whether ``stored`` (the store's record after a crash at or before ``now``) is a state of
    an order last acknowledged as ``acked``, with a late payment or a return ``pending``: its
    status moved on at most (:func:`may_have_become`) and nothing else changed; or the late
    payment made (confirmed, its units taken again anywhere: the books check where); or the
    return made (more units back, perhaps all: cancelled). A sold order cancelled since (a
    whole return) has every unit counted as returned."""
    as_acked = msgspec.structs.replace(stored, status=acked.status)
    if acked.status == "confirmed" and stored.status == "cancelled" and pending is None:
        assert stored.returned == stored.lines, stored  # a whole return brings back every unit
        as_acked = msgspec.structs.replace(as_acked, returned=acked.returned)
    if may_have_become(acked.status, stored, now) and as_acked == acked:
        return True
    if pending == "late":
        paid = msgspec.structs.replace(as_acked, allocations=acked.allocations)
        return stored.status == "confirmed" and paid == acked
    if pending == "return" and acked.status == "confirmed":
        counts = msgspec.structs.replace(
            as_acked, returned=acked.returned, written_off=acked.written_off
        )
        more = all(stored.returned.get(s, 0) >= n for s, n in acked.returned.items())
        return stored.status in ("confirmed", "cancelled") and more and counts == acked
    return False


class Runs(Protocol):
    """What a test keeps of its workers' answers."""

    def read(self, lines: list[str]) -> None:
        """Take in one run's answers."""

    def assert_in(self, state: StoreState, now: datetime) -> None:
        """Every acknowledged answer is in the store."""


def crash_cycles(
    runs: Runs, workload: str, skus: list[str], database: str, read: Callable[[], StoreState]
) -> None:
    """Four times: run the workload a moment, kill it, check the store (the answers in it, its
    books balanced), then restart an engine over it and check its books. Blocks for them."""
    rng = random.Random(workload)
    for _cycle in range(4):
        runs.read(run_and_kill(WORKER, [workload, database], rng.uniform(0.3, 1.2)))
        state = read()
        runs.assert_in(state, datetime.now(UTC))
        assert_store_balances(state)
        assert_restart_balances(database, skus, read)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_location_books_survive_kill_9(request, tmp_path, store):
    database, read = crash_database(request, tmp_path, store)
    runs = LocationRuns()
    crash_cycles(runs, "locations", SKUS, database, read)
    orders = read().orders.values()
    assert runs.seen["order"] > 100 and runs.seen["transfer"] > 10, runs.seen
    assert runs.seen["adjust"] > 10 and runs.seen["deactivated"] > 0, runs.seen
    assert runs.seen["try-return"] > 0 and runs.seen["returned"] > 0, runs.seen
    assert any(o.written_off for o in orders)
    assert {o.channel for o in orders} == {*CHANNELS, None}
    assert any(o.location is not None for o in orders)
    assert any(len(a) > 1 for o in orders for a in o.allocations.values())  # split lines


# -- the cart workload ----------------------------------------------------------------------


def cart_may_be(acked: Order, pending: Pending, stored: Order, now: datetime) -> bool:
    """Whether ``stored`` (the store's record after a crash at or before ``now``) is a state of
    a cart last acknowledged as ``acked``, with ``pending`` in flight: the acknowledged cart
    (its status moved on at most, as :func:`may_have_become` allows), or the cart with the
    pending edit's lines (any allocation: the books check it) or the pending extension's later
    deadline, and nothing else changed."""
    if not may_have_become(acked.status, stored, now):
        return False
    as_acked = msgspec.structs.replace(stored, status=acked.status)
    if as_acked == acked:
        return True
    if acked.status != "reserved" or pending is None:
        return False
    if pending == "extend":
        assert stored.expires_at is not None and acked.expires_at is not None
        earlier = msgspec.structs.replace(as_acked, expires_at=acked.expires_at)
        return stored.expires_at > acked.expires_at and earlier == acked
    unedited = msgspec.structs.replace(as_acked, lines=acked.lines, allocations=acked.allocations)
    return stored.lines == pending and unedited == acked


class CartRuns:
    """What the cart workers acknowledged, over every run so far."""

    def __init__(self) -> None:
        #: each cart as last acknowledged
        self.carts: dict[str, Order] = {}
        #: the call in flight at the kill, per cart: an edit's lines or "extend"
        self.pending: dict[str, Pending] = {}
        self.seen = Counter[str]()

    def read(self, lines: list[str]) -> None:
        for line in lines:
            kind, _, payload = line.partition(" ")
            self.seen[kind] += 1
            if kind in ("order", "change", "extend"):
                cart = _order.decode(payload)
                self.carts[cart.id] = cart
                self.pending.pop(cart.id, None)
            elif kind == "try-change":
                cart_id, new = _edit.decode(payload)
                self.pending[cart_id] = new
            elif kind == "try-extend":
                self.pending[_text.decode(payload)] = "extend"
            elif kind == "refused":
                del self.pending[_text.decode(payload)]
            else:
                raise AssertionError(line)

    def assert_in(self, state: StoreState, now: datetime) -> None:
        """Every acknowledged edit and extension is in the store; one in flight at the kill
        is there or not."""
        for cart_id, acked in self.carts.items():
            stored = state.orders.get(cart_id)
            assert stored is not None, f"acknowledged cart {cart_id} lost"
            pending = self.pending.get(cart_id)
            assert cart_may_be(acked, pending, stored, now), (acked, pending, stored)
            if pending is not None:
                self.seen["in flight at a kill"] += 1
                self.seen["in flight, committed"] += stored != acked
                self.carts[cart_id] = stored  # what it became is durable now
        self.pending.clear()  # a cart is never touched again after its run


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_cart_edits_and_extensions_survive_kill_9(request, tmp_path, store):
    database, read = crash_database(request, tmp_path, store)
    runs = CartRuns()
    crash_cycles(runs, "carts", CART_SKUS, database, read)
    assert runs.seen["change"] > 100 and runs.seen["extend"] > 20, runs.seen
    assert runs.seen["refused"] > 0 and runs.seen["in flight at a kill"] > 0, runs.seen
    orders = read().orders.values()
    assert any(len(a) > 1 for o in orders for a in o.allocations.values())  # split lines


def test_cart_model_tells_an_edit_whole_from_one_in_part():
    """The model above, with no worker: the acknowledged cart, or the pending edit's lines, or a
    later deadline for a pending extension; never an acknowledged edit lost, never a change
    nobody asked for."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    deadline = now + timedelta(minutes=5)
    acked = Order(
        "o", "reserved", {"a": 2, "b": 1}, now - timedelta(minutes=1), deadline,
        allocations={"a": {"north": 1, "south": 1}, "b": {"north": 1}},
    )  # fmt: skip
    edit = {"a": 3}
    edited = msgspec.structs.replace(acked, lines=edit, allocations={"a": {"north": 3}})
    later = msgspec.structs.replace(acked, expires_at=deadline + timedelta(minutes=1))
    paid = msgspec.structs.replace(acked, status="confirmed")
    assert cart_may_be(acked, None, acked, now)
    assert cart_may_be(acked, None, paid, now)  # a confirm in flight
    assert cart_may_be(acked, edit, acked, now)  # the edit did not commit
    assert cart_may_be(acked, edit, edited, now)  # it did
    assert cart_may_be(acked, "extend", later, now)
    assert not cart_may_be(acked, None, edited, now)  # an edit nobody was waiting for
    assert not cart_may_be(acked, {"a": 4}, edited, now)  # other lines than asked for
    assert not cart_may_be(acked, "extend", edited, now)
    assert not cart_may_be(acked, edit, later, now)
    assert not cart_may_be(later, "extend", acked, now)  # an acknowledged extension lost
    assert not cart_may_be(edited, None, acked, now)  # an acknowledged edit lost
    moved = msgspec.structs.replace(edited, expires_at=later.expires_at)
    assert not cart_may_be(acked, edit, moved, now)  # an edit does not move the deadline


def test_store_books_catch_an_edit_recorded_in_part():
    """The store checks above fail for a cart whose edit reached its order row but not the
    ledger, and for stock reserved by no order."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    cart = Order(
        "o", "reserved", {"a": 2}, now, now + timedelta(minutes=5),
        allocations={"a": {"north": 2}},
    )  # fmt: skip
    state = StoreState(keep_movements=True)
    state.locations = {"north": Location("north", priority=1)}
    state.stock = {("a", "north"): (5, 2)}
    state.orders = {"o": cart}
    state.movements = [
        Movement(1, "a", "north", "set", None, 5, 0, None, 0.0),
        Movement(2, "a", "north", "placed", "o", 0, 2, None, 0.0),
    ]
    assert_store_balances(state)
    grown = msgspec.structs.replace(cart, lines={"a": 3}, allocations={"a": {"north": 3}})
    state.orders = {"o": grown}
    with pytest.raises(AssertionError):
        assert_store_balances(state)  # the order row lists 3, the ledger and stock hold 2
    state.orders = {"o": cart}
    state.stock = {("a", "north"): (5, 3)}
    state.movements.append(Movement(3, "a", "north", "changed", "o", 0, 1, None, 0.0))
    with pytest.raises(AssertionError):
        assert_store_balances(state)  # the ledger and stock hold 3, the order row lists 2
