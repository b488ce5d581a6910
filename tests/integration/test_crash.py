"""kill -9 at random moments under load: every acknowledged change survives, books balance."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from stockade import Order, OrderStatus, StockLevel
from tests.books import assert_books_balance, assert_store_matches
from tests.integration.crashes import (
    LATER,
    TRANSITIONS,
    crash_database,
    may_have_become,
    run_and_kill,
)


def run_and_kill_orders(database: str, seconds: float) -> list[tuple[str, str]]:
    acked = []
    for line in run_and_kill("tests.integration.crash_worker", [database], seconds):
        order_id, status = line.split(" ")
        assert status in TRANSITIONS, line
        acked.append((order_id, status))
    return acked


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_survives_kill_9_under_load(request, tmp_path, store):
    rng = random.Random(1)
    database, read = crash_database(request, tmp_path, store)
    acked: dict[str, str] = {}
    for _cycle in range(4):
        for order_id, status in run_and_kill_orders(database, rng.uniform(0.3, 1.2)):
            acked[order_id] = status
        state = read()
        now = datetime.now(UTC)
        missing = [oid for oid in acked if oid not in state.orders]
        assert not missing, f"{len(missing)} acknowledged orders lost"
        for order_id, status in acked.items():
            assert may_have_become(status, state.orders[order_id], now), (
                status,
                state.orders[order_id],
            )
        levels = {
            sku: StockLevel(sku, on_hand, reserved, on_hand - reserved)
            for sku, (on_hand, reserved) in state.products.items()
        }
        assert_store_matches(state, levels, state.orders.values())
        initial = {sku: 0 for sku in levels}
        for m in state.movements or []:
            if m.kind in ("set", "adjusted"):
                initial[m.sku] += m.d_on_hand
        assert_books_balance(levels, state.orders.values(), initial)
    assert len(acked) > 100  # the load really ran


def test_model_allows_exactly_design_transitions():
    """The model above, checked against design.md §1 with no server: every status an answer can
    carry has an entry, and nothing leaves cancelled or expired."""
    assert set(LATER) == set(get_args(OrderStatus))
    assert {
        "reserved": {"reserved", "confirmed", "cancelled", "expired"},
        "confirmed": {"confirmed", "cancelled"},
        "cancelled": {"cancelled"},
        "expired": {"expired"},
    } == LATER
    now = datetime(2030, 1, 1, tzinfo=UTC)
    hold = Order("o", "reserved", {"a": 1}, now - timedelta(minutes=5), now - timedelta(seconds=1))
    assert may_have_become("expired", hold, now)  # lapsed; its expiry not yet committed
    assert not may_have_become("expired", hold, now - timedelta(seconds=2))  # not yet lapsed
    assert not may_have_become("cancelled", hold, now)
    sale = Order("o", "confirmed", {"a": 1}, now)
    assert not may_have_become("expired", sale, now)
    assert not may_have_become("cancelled", sale, now)


def test_a_worker_is_read_while_it_runs():
    """run_and_kill reads the worker's answers as they come: 4 MB of them, far more than a
    pipe holds, all arrive (a worker left blocked on a full pipe would be killed idle)."""
    lines = run_and_kill("tests.integration.chatter", ["40000"], 2.0)
    assert lines == [f"{n:099d}" for n in range(40_000)]
