"""The one fold of events into a batch's effect, and the events it reads."""

from __future__ import annotations

import msgspec
import pytest

from stockade.engine.events import (
    Adjusted,
    Event,
    OrderCancelled,
    OrderConfirmed,
    OrderExpired,
    OrderMoved,
    OrderPlaced,
    StockSet,
)
from stockade.engine.models import Order
from stockade.engine.orders import from_timestamp
from stockade.errors import CorruptStore
from stockade.persistence.fold import fold_batch
from stockade.persistence.journal import Batch
from stockade.persistence.memory import StoreState
from stockade.persistence.rows import batch_rows

T0 = 1_000.0
HELD = Order("h", "reserved", {"a": 2, "b": 1}, from_timestamp(T0), from_timestamp(T0 + 60))
SOLD = Order("s", "confirmed", {"a": 1}, from_timestamp(T0))

EVENTS: list[Event] = [
    StockSet("a", 10, 10, T0),
    Adjusted("b", 3, "restock", T0),
    OrderPlaced(HELD, T0),
    OrderPlaced(SOLD, T0),
    OrderConfirmed("h", {"a": 2, "b": 1}, T0 + 1),
    OrderCancelled("s", {"a": 1}, T0 + 2, was="confirmed"),
    OrderExpired("x", {"a": 1}, T0 + 3),
    OrderCancelled("y", {"b": 1}, T0 + 4, was="reserved"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_round_trip_through_the_tagged_union(event):
    encoded = msgspec.json.encode(event)
    assert msgspec.json.decode(encoded)["type"] == type(event).__name__
    assert msgspec.json.decode(encoded, type=Event) == event


def test_the_three_order_moves_share_one_base():
    for moved in (OrderConfirmed, OrderCancelled, OrderExpired):
        assert issubclass(moved, OrderMoved)
        assert msgspec.structs.fields(moved)[:3] == msgspec.structs.fields(OrderMoved)
    with pytest.raises(TypeError):
        OrderCancelled("y", {"b": 1}, T0, "reserved")  # type: ignore[call-arg]  # was is named


def test_a_batch_folds_into_movements_summed_deltas_and_last_statuses():
    effect = fold_batch(Batch(7, 14, EVENTS))
    assert effect.movements[:3] == [
        (7, "a", None, "set", 10, 0, None, T0),
        (8, "b", None, "adjusted", 3, 0, "restock", T0),
        (9, "a", "h", "placed", 0, 2, None, T0),
    ]
    assert [(seq, kind) for seq, _, _, kind, *_ in effect.movements[3:]] == [
        (9, "placed"), (10, "placed"), (11, "confirmed"), (11, "confirmed"),
        (12, "cancelled"), (13, "expired"), (14, "cancelled"),
    ]  # fmt: skip
    # a: +10 set, hold 2, sell 1, confirm 2, return 1, expire x's 1
    assert effect.product_deltas == {"a": [10 - 1 - 2 + 1, 2 - 2 - 1], "b": [3 - 1, 1 - 1 - 1]}
    # orders placed in the batch are written once, in their last status
    assert effect.new_orders == {
        "h": msgspec.structs.replace(HELD, status="confirmed"),
        "s": msgspec.structs.replace(SOLD, status="cancelled"),
    }
    assert effect.status_updates == {"x": "expired", "y": "cancelled"}


def test_the_sql_rows_and_the_memory_store_are_the_same_fold():
    batch = Batch(1, 5, [*EVENTS[:4], OrderConfirmed("h", {"a": 2, "b": 1}, T0 + 1)])
    rows = batch_rows(batch)
    assert rows.movements == fold_batch(batch).movements
    assert rows.product_deltas == [("a", 7, 0), ("b", 2, 0)]
    assert [row[:2] for row in rows.new_orders] == [("h", "confirmed"), ("s", "confirmed")]
    assert rows.status_updates == []
    state = StoreState(keep_movements=True)
    state.apply_batch(batch)
    assert state.products == {"a": (7, 0), "b": (2, 0)}
    assert {o.id: o.status for o in state.orders.values()} == {"h": "confirmed", "s": "confirmed"}
    assert [(m.seq, m.sku, m.kind) for m in state.movements or []] == [
        (seq, sku, kind) for seq, sku, _, kind, *_ in rows.movements
    ]


def test_the_memory_store_refuses_to_move_an_order_it_does_not_hold():
    state = StoreState()
    with pytest.raises(CorruptStore, match="unknown order 'x'"):
        state.apply_batch(Batch(1, 1, [OrderExpired("x", {"a": 1}, T0)]))
    assert (state.products, state.orders, state.last_seq) == ({}, {}, 0)
