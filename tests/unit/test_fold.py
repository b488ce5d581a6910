"""The one fold of change events into a batch's rows (rows.batch_rows), which the SQL stores
write and the memory store applies, and the events it reads."""

from __future__ import annotations

import msgspec
import pytest

from stockade.engine.changes import (
    Adjusted,
    Change,
    KeyUsed,
    LocationSet,
    OrderCancelled,
    OrderConfirmed,
    OrderEvent,
    OrderExpired,
    OrderPlaced,
    StockSet,
    Transferred,
)
from stockade.engine.models import KeyUse, Location, Order
from stockade.engine.orders import from_timestamp
from stockade.errors import CorruptStore
from stockade.persistence.journal import Batch
from stockade.persistence.memory import StoreState
from stockade.persistence.rows import batch_rows

T0 = 1_000.0
D = "default"
HELD = Order("h", "reserved", {"a": 2, "b": 1}, from_timestamp(T0), from_timestamp(T0 + 60),
             "kh", {"a": {D: 2}, "b": {D: 1}})  # fmt: skip
SOLD = Order("s", "confirmed", {"a": 1}, from_timestamp(T0), allocations={"a": {D: 1}})


def moved(order: Order, status: str) -> Order:
    return msgspec.structs.replace(order, status=status)


EVENTS: list[Change] = [
    StockSet("a", D, 10, 10, T0),
    Adjusted("b", D, 3, "restock", T0),
    OrderPlaced(HELD, T0),
    OrderPlaced(SOLD, T0),
    OrderConfirmed(moved(HELD, "confirmed"), T0 + 1),
    OrderCancelled(moved(SOLD, "cancelled"), T0 + 2, was="confirmed"),
    LocationSet(Location("north", "North", 1, True), T0 + 3),
    Transferred("a", 2, D, "north", "move", T0 + 4),
    KeyUsed(KeyUse("k2", "extend", "h", 60.0, T0 + 5), T0 + 5),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_round_trip_through_the_tagged_union(event):
    encoded = msgspec.json.encode(event)
    assert msgspec.json.decode(encoded)["type"] == type(event).__name__
    assert msgspec.json.decode(encoded, type=Change) == event


def test_order_events_share_one_base():
    for kind in (OrderPlaced, OrderConfirmed, OrderCancelled, OrderExpired):
        assert issubclass(kind, OrderEvent)
        assert msgspec.structs.fields(kind)[:2] == msgspec.structs.fields(OrderEvent)


def test_a_batch_folds_into_movements_summed_deltas_and_last_orders():
    rows = batch_rows(Batch(7, 15, EVENTS))
    assert rows.movements[:3] == [
        (7, "a", D, "set", None, 10, 0, None, T0),
        (8, "b", D, "adjusted", None, 3, 0, "restock", T0),
        (9, "a", D, "placed", "h", 0, 2, None, T0),
    ]
    assert rows.movements[-2:] == [
        (14, "a", D, "transferred", None, -2, 0, "move", T0 + 4),
        (14, "a", "north", "transferred", None, 2, 0, "move", T0 + 4),
    ]
    # a at default: +10 set, hold 2, sell 1, confirm 2, return 1, transfer 2 away
    assert rows.stock_deltas == [
        ("a", D, 10 - 1 - 2 + 1 - 2, 2 - 2), ("b", D, 3 - 1, 1 - 1), ("a", "north", 2, 0),
    ]  # fmt: skip
    # orders placed in the batch are written once, as they ended
    assert [row[:2] for row in rows.new_orders] == [("h", "confirmed"), ("s", "cancelled")]
    assert rows.updated_orders == []
    assert [key[:3] for key in rows.keys] == [("kh", "place", "h"), ("k2", "extend", "h")]
    assert rows.locations == [Location("north", "North", 1, True)]


def test_the_memory_store_applies_the_same_rows():
    state = StoreState(keep_movements=True)
    state.apply_batch(Batch(1, len(EVENTS), EVENTS))
    assert state.products == {"a": (8, 0), "b": (2, 0)}  # over its two locations
    assert state.stock[("a", "north")] == (2, 0)
    assert {o.id: o.status for o in state.orders.values()} == {"h": "confirmed", "s": "cancelled"}
    assert set(state.keys) == {"kh", "k2"}


def test_the_memory_store_refuses_what_the_schema_refuses_and_changes_nothing():
    state = StoreState()
    oversold = msgspec.structs.replace(SOLD, lines={"a": 5}, allocations={"a": {D: 5}})
    with pytest.raises(CorruptStore):
        state.apply_batch(Batch(1, 1, [OrderPlaced(oversold, T0)]))
    assert (state.products, state.orders, state.last_seq) == ({}, {}, 0)
