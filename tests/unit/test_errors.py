"""Bad input and bad stores get a StockadeError that says what is wrong, never a bare
ValueError, RuntimeError, TypeError or KeyError, and nothing is changed."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

import stockade
from stockade import CorruptStore, IncompatibleStore, InvalidRequest, MemoryStore, StockLevel
from stockade.engine.models import Order
from stockade.engine.orders import from_timestamp
from stockade.persistence.journal import Batch, Journal, is_new_batch
from stockade.persistence.rows import order_from_row
from stockade.persistence.schema import SCHEMA_VERSION, migrations_after
from stockade.persistence.sqlite import SQLiteStore


@pytest.mark.parametrize(
    "option",
    [
        {"mailbox_size": 0},
        {"mailbox_size": "10"},
        {"journal_size": 0},
        {"journal_size": 1.5},
        {"idempotency_ttl": 60},
        {"idempotency_ttl": timedelta(seconds=-1)},
        {"max_hold": "1h"},
        {"shutdown_grace": -1},
        {"shutdown_grace": float("nan")},
        {"shutdown_grace": None},
        {"wall_clock": 1e9},
    ],
)
async def test_bad_engine_options_are_refused_before_anything_opens(option, tmp_path):
    path = tmp_path / "stock.db"
    with pytest.raises(InvalidRequest, match=next(iter(option))):
        async with stockade.open_engine(f"sqlite:///{path}", **option):
            pass  # pragma: no cover
    assert not path.exists()


async def test_a_journal_refuses_an_unknown_durability():
    with pytest.raises(InvalidRequest, match="durability"):
        Journal(MemoryStore(), durability="eventually")  # type: ignore[arg-type]


async def test_a_store_used_before_it_was_loaded_says_so(tmp_path):
    store = SQLiteStore(str(tmp_path / "stock.db"))
    with pytest.raises(InvalidRequest, match="not open"):
        await store.commit(Batch(1, 1, []))


def test_batches_must_follow_what_was_committed():
    assert is_new_batch(11, 12, 10)
    assert not is_new_batch(9, 10, 10)  # a retried commit that had landed
    assert not is_new_batch(5, 8, 10)
    with pytest.raises(CorruptStore, match="does not follow"):
        is_new_batch(12, 12, 10)  # a gap
    with pytest.raises(CorruptStore, match="does not follow"):
        is_new_batch(10, 11, 10)  # an overlap


def test_a_newer_schema_is_an_incompatible_store():
    assert migrations_after(SCHEMA_VERSION) == []
    with pytest.raises(IncompatibleStore, match="newer than this stockade"):
        migrations_after(SCHEMA_VERSION + 1)


@pytest.mark.parametrize(
    "row",
    [
        ("o1", "confirmed", "not json", 1.0, *[None] * 10),
        ("o1", "confirmed", '{"a": "one"}', 1.0, *[None] * 10),
        ("o1", "confirmed", '{"a": 1}', "yesterday", *[None] * 10),
        ("o1", "confirmed", '{"a": 1}', 1e300, *[None] * 10),
        ("o1", "confirmed", '{"a": 1}', 1.0, None, None, '{"a": 1}', *[None] * 7),
        ("o1", "confirmed", '{"a": 1}', 1.0, *[None] * 5, '{"a": "x"}', *[None] * 4),
        ("o1", "confirmed", '{"a": 1}', 1.0, *[None] * 6, "[1]", *[None] * 3),
        ("o1", "confirmed", '{"a": 1}', 1.0, *[None] * 7, "c", None, "[1]"),
    ],
)
def test_an_order_row_that_cannot_be_read_is_corrupt(row):
    with pytest.raises(CorruptStore, match="o1"):
        order_from_row(row + (None,) * (14 - len(row)))


def _tampered(products: dict[str, tuple[int, int]], *orders: Order) -> MemoryStore:
    store = MemoryStore()
    store.state.stock.update({(sku, "default"): v for sku, v in products.items()})
    store.state.orders.update({order.id: order for order in orders})
    return store


_NOW = from_timestamp(1e9)
_LATER = from_timestamp(1e9 + 60)


@pytest.mark.parametrize(
    ("store", "message"),
    [
        (_tampered({"a": (5, 2)}), "reserved 2, open holds 0"),
        (_tampered({"a": (1, 2)}, Order("h", "reserved", {"a": 2}, _NOW, _LATER)), "on_hand 1"),
        (_tampered({"a": (5, 0)}, Order("h", "reserved", {"b": 1}, _NOW, _LATER)), "'b'"),
        (_tampered({"a": (5, 1)}, Order("h", "reserved", {"a": 1}, _NOW, None)), "deadline"),
        (_tampered({"a": (5, 0)}, Order("s", "confirmed", {"b": 1}, _NOW)), "'b'"),
    ],
    ids=[
        "held-not-reserved",
        "reserved-above-on-hand",
        "hold-of-unknown",
        "no-deadline",
        "sale-of-unknown",
    ],
)
async def test_an_inconsistent_store_is_refused_at_start(store, message):
    with pytest.raises(CorruptStore, match=message):
        async with stockade.open_engine(store=store, wall_clock=lambda: 1e9):
            pass  # pragma: no cover


async def test_a_consistent_store_with_holds_and_sales_opens():
    store = _tampered(
        {"a": (5, 2)},
        Order("h", "reserved", {"a": 2}, _NOW, _LATER),
        Order("s", "confirmed", {"a": 1}, _NOW),
    )
    async with stockade.open_engine(store=store, wall_clock=lambda: 1e9) as engine:
        assert await engine.stock("a") == StockLevel("a", 5, 2, 3)


async def test_a_file_that_is_not_a_database_is_a_corrupt_store(tmp_path):
    path = tmp_path / "stock.db"
    path.write_bytes(b"this is not an SQLite database, it only has its name" * 100)
    with pytest.raises(CorruptStore) as caught:
        async with stockade.open_engine(f"sqlite:///{path}"):
            pass  # pragma: no cover
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    # and the lock was given back: a second attempt meets the same error, not StoreInUse
    with pytest.raises(CorruptStore):
        async with stockade.open_engine(f"sqlite:///{path}"):
            pass  # pragma: no cover


async def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path):
    with pytest.raises(stockade.StoreUnavailable):
        async with stockade.open_engine(f"sqlite:///{tmp_path}/missing/stock.db"):
            pass  # pragma: no cover


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": "5"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 2.0}, "limit"),
        ({"after": 5}, "after"),
    ],
)
async def test_a_bad_products_page_is_an_invalid_request(engine, kwargs, message):
    await engine.set_stock("a", 1)
    with pytest.raises(InvalidRequest, match=message):
        engine.products(**kwargs)
    assert engine.products() == [StockLevel("a", 1, 0, 1)]
