"""Late payments and partial returns (design.md §13) against every store: what they commit is
what a restart finds, they work on orders that left memory (read back from the store), a
database of the previous schema opens and upgrades, and the books check finds a tampered
return."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import stockade
from stockade import StockLevel
from stockade.persistence.audit import check_state
from stockade.persistence.books import Tally
from stockade.persistence.schema import MIGRATIONS, RETURNS_SINCE
from tests.books import assert_location_books_balance, assert_orders_match_movements
from tests.integration.stores import (
    StoreKind,
    database_url,
    memory_kind,
    postgres_kind,
    sqlite_kind,
)
from tests.integration.test_books_check import checked, tamper

T0 = 1_000_000_000.0
DAY = 86_400.0


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> StoreKind:
    if request.param == "postgresql":
        return postgres_kind(request.getfixturevalue("postgres_dsn"))
    return {"memory": memory_kind, "sqlite": lambda: sqlite_kind(tmp_path)}[request.param]()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request)


def opened(kind: StoreKind, at: float) -> Any:
    return stockade.open_engine(store=kind.make(), wall_clock=lambda: at)


def balanced(kind: StoreKind) -> None:
    state = kind.read()
    report = check_state(state, Tally())
    assert report.balanced, report.findings
    assert state.movements is not None
    assert_orders_match_movements(state.orders.values(), state.movements)


async def test_returns_and_late_payments_survive_restarts_and_retirement(kind):
    async with opened(kind, T0) as engine:
        await engine.set_location("north", priority=1)
        await engine.set_stock("a", 10)
        await engine.set_stock("b", 5, location="north")
        sold = await engine.place_order({"a": 4, "b": 1})
        held = await engine.place_order({"a": 2}, hold_for=60)
        lapsed = await engine.place_order({"a": 1}, hold_for=60)
        first = await engine.return_units(sold.id, {"a": 1}, idempotency_key="rma-1")
        assert await engine.stock("a") == StockLevel("a", 7, 3, 4)
    assert kind.read().orders[sold.id] == first
    balanced(kind)

    async with opened(kind, T0 + 120) as engine:  # both holds lapsed while stopped
        assert (await engine.get_order(held.id)).status == "expired"
        late = await engine.confirm(held.id, late=True)
        assert late.status == "confirmed"
        # the key is remembered across the restart: a retry moves nothing
        assert await engine.return_units(sold.id, {"a": 1}, idempotency_key="rma-1") == first
        with pytest.raises(stockade.IdempotencyConflict):
            await engine.return_units(sold.id, {"a": 2}, idempotency_key="rma-1")
        lost = await engine.return_units(sold.id, {"b": 1}, restock=False)
        assert (lost.returned, lost.written_off) == ({"a": 1, "b": 1}, {"b": 1})
        assert await engine.stock("a") == StockLevel("a", 5, 0, 5)
        assert await engine.stock("b") == StockLevel("b", 4, 0, 4)
    assert kind.read().orders[held.id] == late
    balanced(kind)

    async with opened(kind, T0 + 3 * DAY) as engine:  # every order has left memory
        assert engine.statistics().orders == 0
        assert await engine.get_order(sold.id) == lost
        again = await engine.return_units(sold.id, {"a": 1})
        assert again.returned == {"a": 2, "b": 1}
        rest = await engine.cancel(sold.id)  # only the two units of a not yet back
        assert (rest.status, rest.returned, rest.written_off) == (
            "cancelled", {"a": 4, "b": 1}, {"b": 1},
        )  # fmt: skip
        assert (await engine.confirm(lapsed.id, late=True)).status == "confirmed"
        written = await engine.return_units(held.id, {"a": 2}, restock=False)
        assert written.status == "cancelled"
        assert await engine.stock("a") == StockLevel("a", 7, 0, 7)
        assert await engine.stock("b") == StockLevel("b", 4, 0, 4)
        levels = {sku: await engine.stock_by_location(sku) for sku in "ab"}
    state = kind.read()
    orders = [state.orders[o.id] for o in (sold, held, lapsed)]
    assert [o.status for o in orders] == ["cancelled", "cancelled", "confirmed"]
    net = {("a", "default"): 10, ("b", "north"): 5}
    assert_location_books_balance(levels, orders, net, state.movements, stored=state.stock)
    balanced(kind)


#: The previous release's schema and its change feed's table (a row per event), which later
#: migrations replace with pages.
PREVIOUS_RELEASE = RETURNS_SINCE - 1
EVENTS_TABLE = [s for step in MIGRATIONS[:PREVIOUS_RELEASE] for s in step if " events " in s]


async def test_a_store_of_the_previous_schema_opens_and_upgrades(database):
    async with stockade.open_engine(database, feed=False) as engine:  # no events to turn back
        await engine.set_stock("a", 5)
        sold = await engine.place_order({"a": 3})
        returned = await engine.cancel((await engine.place_order({"a": 1})).id)
    # as the previous release left it: no return columns, events in rows, schema version 5
    # (nor the sinks, the webhooks' batch, the sale rules' columns and tables, which came after)
    assert len(EVENTS_TABLE) == 2, EVENTS_TABLE  # the table and its index
    tamper(
        database,
        "DROP TABLE sinks",
        "ALTER TABLE webhooks DROP COLUMN batch",
        "DROP INDEX orders_by_customer",
        *(f"ALTER TABLE orders DROP COLUMN {c}" for c in ("customer", "reference", "metadata")),
        "DROP TABLE product_rules",
        "DROP TABLE customer_counts",
        "ALTER TABLE orders DROP COLUMN returned",
        "ALTER TABLE orders DROP COLUMN written_off",
        "DROP TABLE event_pages",
        *EVENTS_TABLE,
        f"UPDATE stockade_state SET schema_version = {PREVIOUS_RELEASE}",
    )
    report, details = await checked(database)  # a reader reads it as it is (never upgrades)
    assert report.balanced and report.orders == 2, details
    async with stockade.open_engine(database) as engine:
        assert (await engine.get_order(sold.id)).returned == {}
        assert (await engine.get_order(returned.id)).returned == {}  # a whole return, before
        back = await engine.return_units(sold.id, {"a": 1})
        assert (back.status, back.returned) == ("confirmed", {"a": 1})
        assert await engine.stock("a") == StockLevel("a", 3, 0, 3)
    report, details = await checked(database)
    assert report.balanced, details


async def store_with_returns(database: str) -> dict[str, str]:
    async with stockade.open_engine(database) as engine:
        await engine.set_location("north", priority=1)
        await engine.set_stock("a", 3)
        await engine.set_stock("a", 3, location="north")
        sold = await engine.place_order({"a": 5})  # default 3, north 2
        await engine.return_units(sold.id, {"a": 2})  # restocked at default
        await engine.return_units(sold.id, {"a": 1}, restock=False)  # written off at north
    report, details = await checked(database)
    assert report.balanced, details
    return {"sold": sold.id}


async def test_a_return_recorded_but_never_restocked_is_found(database):
    sold = (await store_with_returns(database))["sold"]
    tamper(database, f"DELETE FROM movements WHERE order_id = '{sold}' AND kind = 'returned'")
    report, details = await checked(database)
    assert not report.balanced
    assert f"order {sold} is confirmed but has no 'returned' movement" in details
    assert (
        f"order {sold} (confirmed), a at default: its movements move on_hand by -3, but a "
        "confirmed order allocated 3 there with 2 restocked moves it by -1"
    ) in details


async def test_a_hand_edited_return_count_is_found(database):
    sold = (await store_with_returns(database))["sold"]
    tamper(database, f"""UPDATE orders SET returned = '{{"a": 1}}' WHERE id = '{sold}'""")
    report, details = await checked(database)
    assert not report.balanced
    assert details == [
        f"order {sold} (confirmed), a at default: its movements move on_hand by -1, but a "
        "confirmed order allocated 3 there moves it by -3"
    ]
    tamper(database, f"""UPDATE orders SET returned = '{{"a": 7}}' WHERE id = '{sold}'""")
    _, details = await checked(database)
    assert details == [
        f"order {sold} (confirmed): 7 of a returned and 1 written off, of a line of 5 (needs "
        "0 <= written off <= returned <= line, returned > 0)"
    ]


async def test_a_write_off_without_its_movement_is_found(database):
    sold = (await store_with_returns(database))["sold"]
    tamper(database, f"DELETE FROM movements WHERE order_id = '{sold}' AND kind = 'written_off'")
    _, details = await checked(database)
    assert details == [f"order {sold} is confirmed but has no 'written_off' movement"]
