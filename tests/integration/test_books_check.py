"""The books check against real stores (design.md §11): a store the engine wrote balances, read
while its owner runs or not, on SQLite and PostgreSQL; and each way a store can be tampered
with is found: a hand-edited on_hand, a deleted movement, a missing hold, an order whose
status disagrees with its movements."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

import stockade
from stockade import Engine, MemoryStore
from stockade._open import open_engine_and_store
from stockade.persistence.audit import check_database, check_store
from stockade.persistence.books import BooksReport, Finding, Tally
from tests.integration.stores import database_url
from tests.legacy import version_1_statements

KINDS = ["sqlite", "postgresql"]


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request)


def tamper(database: str, *statements: str) -> None:
    """Run ``statements`` on the database behind the engine's back (a hand edit)."""
    if database.startswith("sqlite:///"):
        conn = sqlite3.connect(database[len("sqlite:///") :])
        with conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()
        return
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(database)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


async def trade(engine: Engine) -> dict[str, Any]:
    """A bit of everything that moves stock; returns the orders by what became of them."""
    await engine.set_location("north", priority=1)
    await engine.set_stock("a", 5)
    await engine.set_stock("a", 4, location="north")
    await engine.set_stock("b", 4)
    await engine.adjust_stock("b", 2, reason="restock")
    await engine.transfer("a", 1, "north", "default")
    held = await engine.place_order({"a": 7}, hold_for=600)  # default 6, north 1
    edited = await engine.place_order({"b": 1}, hold_for=600)
    await engine.change_order(edited.id, {"a": 1, "b": 2})
    sold = await engine.place_order({"b": 1})
    confirmed = await engine.confirm((await engine.place_order({"b": 1}, hold_for=600)).id)
    returned = await engine.cancel((await engine.place_order({"b": 1})).id)
    released = await engine.cancel((await engine.place_order({"a": 1}, hold_for=600)).id)
    return {"held": held, "edited": edited, "sold": sold, "confirmed": confirmed,
            "returned": returned, "released": released}  # fmt: skip


async def traded(database: str) -> dict[str, Any]:
    """:func:`trade` on ``database`` by an engine that then closes."""
    async with stockade.open_engine(database) as engine:
        return await trade(engine)


def holds(where: str, reserved: int, held: int) -> str:
    return (
        f"{where}: reserved is {reserved} in the stock table, but the open holds (reserved "
        f"orders) hold {held} there"
    )


async def checked(database: str) -> tuple[BooksReport, list[str]]:
    details: list[str] = []
    report = await check_database(database, Tally(on_finding=lambda f: details.append(f.detail)))
    return report, details


async def test_a_store_the_engine_wrote_balances_while_owned_and_after(database):
    async with open_engine_and_store(database) as (engine, store):
        orders = await trade(engine)
        report, details = await checked(database)  # the engine owns the store meanwhile
        assert details == [] and report.balanced, details
        assert (report.products, report.levels, report.orders) == (2, 3, len(orders))
        assert report.open_holds == 2
        assert await check_store(store, Tally()) == report  # what a live server's check reads
    report, _ = await checked(database)
    assert report.balanced and report.orders == len(orders)


async def test_a_hand_edited_on_hand_is_found(database):
    await traded(database)
    tamper(database, "UPDATE stock SET on_hand = on_hand + 5 WHERE sku = 'b'")
    report, details = await checked(database)
    assert not report.balanced
    assert details == [
        "b at default: on_hand is 9 in the stock table, but its movements add up to 4"
    ]
    (finding,) = report.findings
    assert (finding.kind, finding.sku, finding.recorded, finding.expected) == ("ledger", "b", 9, 4)


async def test_a_deleted_movement_is_found_at_its_level_and_its_order(database):
    orders = await traded(database)
    sold = orders["confirmed"].id
    tamper(database, f"DELETE FROM movements WHERE order_id = '{sold}' AND kind = 'confirmed'")
    report, details = await checked(database)
    kinds = {(f.kind, f.field) for f in report.findings}
    assert kinds == {("ledger", "on_hand"), ("ledger", "reserved"), ("order", "on_hand"),
                     ("order", "reserved"), ("order", None)}  # fmt: skip
    assert f"order {sold} is confirmed but has no 'confirmed' movement" in details
    assert "b at default: on_hand is 4 in the stock table, but its movements add up to 5" in details


async def test_a_missing_hold_is_found(database):
    orders = await traded(database)
    held = orders["held"].id
    tamper(database, f"DELETE FROM orders WHERE id = '{held}'")
    report, details = await checked(database)
    assert holds("a at default", 6, 0) in details and holds("a at north", 2, 1) in details
    assert any(f.kind == "orphan" and f.order_id == held for f in report.findings)
    assert report.open_holds == 1


async def test_an_order_whose_status_disagrees_with_its_movements_is_found(database):
    orders = await traded(database)
    edited = orders["edited"].id
    tamper(database, f"UPDATE orders SET status = 'expired' WHERE id = '{edited}'")
    _, details = await checked(database)
    assert f"order {edited} is expired but has no 'expired' movement" in details
    assert (
        f"order {edited} (expired), b at default: its movements move reserved by +2, but an "
        "expired order allocated 2 there moves it by 0"
    ) in details
    assert holds("b at default", 2, 0) in details


async def test_a_database_an_earlier_stockade_wrote_balances_once_upgraded(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    statements, _ = version_1_statements()
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()
    with pytest.raises(stockade.IncompatibleStore, match="schema version 1"):
        await checked(f"sqlite:///{path}")
    async with stockade.open_engine(f"sqlite:///{path}"):
        pass  # opening upgrades it
    report, details = await checked(f"sqlite:///{path}")
    assert report.balanced, details
    assert (report.orders, report.open_holds) == (3, 1)


async def test_what_is_not_a_readable_store_is_refused_clearly(tmp_path):
    with pytest.raises(stockade.StoreUnavailable, match="no database at"):
        await checked(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()  # never created
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(stockade.StoreUnavailable, match="not a stockade database"):
        await checked(f"sqlite:///{other}")
    with pytest.raises(stockade.InvalidRequest, match="a stored database is needed"):
        await checked("memory://")


async def test_a_memory_store_is_checked_in_process():
    store = MemoryStore(keep_movements=True)
    async with stockade.open_engine(store=store) as engine:
        await trade(engine)
        assert (await check_store(store, Tally())).balanced
    store.state.stock["b", "default"] = (99, 2)
    report = await check_store(store, Tally())
    assert [(f.kind, f.recorded) for f in report.findings] == [("ledger", 99)]
    with pytest.raises(stockade.InvalidRequest, match="memory only"):
        await check_store(MemoryStore(keep_state=False), Tally())


async def test_a_check_can_be_cancelled_while_its_thread_is_busy(tmp_path):
    database = f"sqlite:///{tmp_path / 'stock.db'}"
    await traded(database)
    tamper(database, "UPDATE stock SET on_hand = on_hand + 1")
    reading, release = trio.Event(), threading.Event()

    def stuck(_: Finding) -> None:  # runs in the check's worker thread
        trio.from_thread.run_sync(reading.set)
        release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(check_database, database, Tally(on_finding=stuck))
        await reading.wait()
        nursery.cancel_scope.cancel()  # returns although the thread is still in stuck()
    release.set()
