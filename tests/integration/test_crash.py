"""kill -9 at random moments under load: every acknowledged change survives, books balance."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import pytest

from stockade import Order, OrderStatus, StockLevel
from stockade.persistence.memory import StoreState
from tests.books import assert_books_balance, assert_store_matches
from tests.integration.stores import read_postgres, read_sqlite

ROOT = Path(__file__).resolve().parents[2]
#: design.md §1: the moves an order's status can make (confirmed -> cancelled is a return).
TRANSITIONS: dict[str, set[str]] = {
    "reserved": {"confirmed", "cancelled", "expired"},
    "confirmed": {"cancelled"},
    "cancelled": set(),
    "expired": set(),
}


def _reachable(status: str) -> set[str]:
    seen = {status}
    todo = [status]
    while todo:
        for later in TRANSITIONS[todo.pop()] - seen:
            seen.add(later)
            todo.append(later)
    return seen


#: What an acknowledged status may have become by the time of the crash: itself or any status
#: reachable from it through TRANSITIONS.
LATER = {status: _reachable(status) for status in TRANSITIONS}


def may_have_become(acked: str, stored: Order, now: datetime) -> bool:
    """Whether ``stored`` (the store's record after a crash at or before ``now``) is a state an
    order acknowledged as ``acked`` may be in.

    One answer is not a change that waits for durability: ``cancel`` (or ``get_order``) on a
    lapsed hold answers ``expired`` at once, while the expiry it decided is still in the journal.
    So an acknowledged ``expired`` may still be a ``reserved`` record, provided its hold has
    lapsed (start-up expires it). Every other answer is durable before it is given.
    """
    if stored.status in LATER[acked]:
        return True
    return (
        acked == "expired"
        and stored.status == "reserved"
        and stored.expires_at is not None
        and stored.expires_at <= now
    )


def spawn_worker(database: str) -> subprocess.Popen[str]:
    """Start crash_worker.py on ``database``; it prints "ready" once its engine is open."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash_worker", database],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_and_kill(database: str, seconds: float) -> list[tuple[str, str]]:
    worker = spawn_worker(database)
    assert worker.stdout is not None
    assert worker.stdout.readline() == "ready\n"
    time.sleep(seconds)
    worker.send_signal(signal.SIGKILL)
    out, _ = worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    acked = []
    for line in out.split("\n")[:-1]:  # the last piece, if any, was cut short by the kill
        order_id, status = line.split(" ")
        assert status in TRANSITIONS, line
        acked.append((order_id, status))
    return acked


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_survives_kill_9_under_load(request, tmp_path, store):
    rng = random.Random(1)
    if store == "sqlite":
        database = f"sqlite:///{tmp_path / 'crash.db'}"

        def read() -> StoreState:
            return read_sqlite(database[len("sqlite:///") :])
    else:
        database = request.getfixturevalue("postgres_dsn")

        def read() -> StoreState:
            return read_postgres(database)

    acked: dict[str, str] = {}
    for _cycle in range(4):
        for order_id, status in run_and_kill(database, rng.uniform(0.3, 1.2)):
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
