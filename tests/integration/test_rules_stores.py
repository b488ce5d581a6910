"""The sale's rules on real stores (design.md §13), SQLite and PostgreSQL: rules, per_customer
counts and orders' customer fields survive a restart; the books check verifies the counts and
finds each way they can be tampered with; a store the previous stockade wrote (schema 5)
opens and upgrades."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

import stockade
from stockade import Engine, LimitExceeded, ProductRules
from stockade.persistence.audit import check_database
from stockade.persistence.books import BooksReport, Tally
from stockade.persistence.schema import MIGRATIONS, STATE_TABLE
from tests.integration.stores import database_url
from tests.integration.test_books_check import tamper

KINDS = ["sqlite", "postgresql"]


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request)


async def checked(database: str) -> tuple[BooksReport, list[str]]:
    details: list[str] = []
    report = await check_database(database, Tally(on_finding=lambda f: details.append(f.detail)))
    return report, details


async def sale(engine: Engine) -> dict[str, Any]:
    """A drop: "shoe" at most 2 per customer, with holds, purchases, a cart edit, a release and
    a return; "sock" with no rules."""
    await engine.set_stock("shoe", 20)
    await engine.set_stock("sock", 20)
    rules = await engine.set_rules(
        "shoe", per_customer=2, per_order=2, low_stock_at=15,
        closes_at=datetime.now(UTC) + timedelta(days=1),
    )  # fmt: skip
    ann = await engine.place_order({"shoe": 1, "sock": 3}, hold_for=600, customer="ann",
                                   reference="#1", metadata={"size": "42"})  # fmt: skip
    await engine.change_order(ann.id, {"shoe": 2, "sock": 3})
    bob = await engine.place_order({"shoe": 2}, customer="bob")
    cy = await engine.place_order({"shoe": 1}, hold_for=600, customer="cy")
    await engine.cancel(cy.id)  # released: no longer counts
    dee = await engine.place_order({"shoe": 2}, customer="dee")
    await engine.cancel(dee.id)  # returned: no longer counts
    eve = await engine.place_order({"shoe": 1}, hold_for=600, customer="eve")
    await engine.confirm(eve.id)
    return {"rules": rules, "ann": ann.id, "bob": bob.id, "eve": eve.id}


async def test_rules_counts_and_customers_survive_a_restart(database):
    async with stockade.open_engine(database) as engine:
        made = await sale(engine)
    async with stockade.open_engine(database) as engine:
        assert await engine.rules("shoe") == made["rules"]
        state = engine._ledgers["shoe"].rules
        assert state is not None and state.counts == {"ann": 2, "bob": 2, "eve": 1}
        with pytest.raises(LimitExceeded):
            await engine.place_order({"shoe": 1}, customer="bob")
        await engine.place_order({"shoe": 1}, customer="eve")
        ann = await engine.get_order(made["ann"])
        assert (ann.customer, ann.reference, ann.metadata) == ("ann", "#1", {"size": "42"})
        assert [o.id for o in await engine.list_orders(customer="bob")] == [made["bob"]]
        events, _ = await engine.event_page(types=["product.low_stock"])
        assert [e.data["stock_level"]["available"] for e in events] == [15, 14, 15]  # downward
        await engine.set_rules("shoe")
    async with stockade.open_engine(database) as engine:
        assert await engine.rules("shoe") == ProductRules(sku="shoe")
        assert engine._ledgers["shoe"].rules is None
    report, details = await checked(database)
    assert report.balanced, details


async def test_the_books_check_verifies_the_counts(database):
    async with stockade.open_engine(database) as engine:
        made = await sale(engine)
    report, details = await checked(database)
    assert report.balanced, details
    bob, ann, eve = made["bob"], made["ann"], made["eve"]
    tamper(database, f"UPDATE customer_counts SET units = 5 WHERE order_id = '{bob}'")
    _, details = await checked(database)
    assert details == [
        f"the count of shoe for order {bob} (bob, 5 units): the order is confirmed, of "
        "customer 'bob', with 2 units of shoe",
        "bob is counted 5 units of shoe, past its per_customer limit of 2",
    ]
    tamper(
        database,
        f"UPDATE customer_counts SET units = 2 WHERE order_id = '{bob}'",
        f"DELETE FROM customer_counts WHERE order_id = '{ann}'",
        f"UPDATE customer_counts SET customer = 'mallory' WHERE order_id = '{eve}'",
    )
    report, details = await checked(database)
    assert {f.kind for f in report.findings} == {"count"}
    assert (f"order {ann} of ann holds or bought 2 of shoe under its per_customer rule, but no "
            "count says so") in details  # fmt: skip
    assert any(f"order {eve} (mallory" in d for d in details)
    tamper(database, f"UPDATE customer_counts SET customer = 'eve' WHERE order_id = '{eve}'",
           "INSERT INTO customer_counts VALUES ('shoe', 'never-committed', 'zed', 1)",
           f"INSERT INTO customer_counts VALUES ('sock', '{ann}', 'ann', 3)")  # fmt: skip
    _, details = await checked(database)  # an order that never committed is left alone
    assert details == [
        f"the count of sock for order {ann} (ann, 3 units): sock has no per_customer rule",
        f"order {ann} of ann holds or bought 2 of shoe under its per_customer rule, but no "
        "count says so",
    ]
    async with stockade.open_engine(database) as engine:  # start-up reads live rows only
        state = engine._ledgers["shoe"].rules
        assert state is not None and "zed" not in state.counts


def lines(value: dict[str, Any]) -> str:
    return msgspec.json.encode(value).decode()


T0 = datetime.now(UTC).timestamp()


def build_v5_sqlite(path: Path) -> None:
    """A database as the previous stockade (schema 5) left it: a confirmed order and a hold."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(STATE_TABLE)
        conn.execute("INSERT INTO stockade_state VALUES (1, 0, 0, 0)")
        for step in MIGRATIONS[:5]:
            for statement in step:
                conn.execute(statement)
        conn.execute("UPDATE stockade_state SET schema_version = 5, last_seq = 3")
        conn.execute("INSERT INTO stock VALUES ('shoe', 'default', 9, 1)")
        rows = [
            ("o-sold", "confirmed", lines({"shoe": 1}), T0 - 60, None, None,
             lines({"shoe": {"default": 1}}), None, None),
            ("o-held", "reserved", lines({"shoe": 1}), T0 - 30, T0 + 3600, "cart-1",
             lines({"shoe": {"default": 1}}), None, None),
        ]  # fmt: skip
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO movements VALUES (?, ?, 'default', ?, ?, ?, ?, NULL, ?)",
            [(1, "shoe", "set", None, 10, 0, T0 - 90),
             (2, "shoe", "placed", "o-sold", -1, 0, T0 - 60),
             (3, "shoe", "placed", "o-held", 0, 1, T0 - 30)],
        )  # fmt: skip
    conn.close()


async def test_a_store_the_previous_stockade_wrote_opens_and_upgrades(tmp_path):
    path = tmp_path / "v5.db"
    build_v5_sqlite(path)
    async with stockade.open_engine(f"sqlite:///{path}") as engine:
        held = await engine.get_order("o-held")
        assert (held.customer, held.reference, held.metadata) == (None, None, None)
        assert await engine.rules("shoe") == ProductRules(sku="shoe")
        await engine.set_rules("shoe", per_customer=1)
        await engine.place_order({"shoe": 1}, customer="ann")
        with pytest.raises(LimitExceeded):
            await engine.place_order({"shoe": 1}, customer="ann")
        assert (await engine.confirm("o-held")).status == "confirmed"  # orders before the rule
    version = sqlite3.connect(path).execute("SELECT schema_version FROM stockade_state")
    assert version.fetchone()[0] == len(MIGRATIONS)
    report, details = await checked(f"sqlite:///{path}")
    assert report.balanced, details


async def test_returns_and_late_payments_keep_the_stored_counts_true(database):
    async with stockade.open_engine(database) as engine:
        await engine.set_stock("shoe", 20)
        await engine.set_stock("sock", 20)
        await engine.set_rules("shoe", per_customer=3)
        bought = await engine.place_order({"shoe": 3, "sock": 2}, customer="ann")
        await engine.return_units(bought.id, {"shoe": 1})
        await engine.return_units(bought.id, {"shoe": 1}, restock=False)
        await engine.return_units(bought.id, {"sock": 2})
        late = await engine.place_order({"shoe": 2}, hold_for=0.05, customer="bob")
        await trio.sleep(0.1)
        await engine.confirm(late.id, late=True)
    report, details = await checked(database)
    assert report.balanced, details
    async with stockade.open_engine(database) as engine:
        state = engine._ledgers["shoe"].rules
        assert state is not None and state.counts == {"ann": 1, "bob": 2}
        await engine.return_units(bought.id, {"shoe": 1})  # the last unit: cancelled
        assert state.counts == {"bob": 2}
    report, details = await checked(database)
    assert report.balanced, details
