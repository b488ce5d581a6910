"""One contract, every store: what the engine commits is what a restart finds."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
import trio
import trio.testing

import stockade
from stockade import StockLevel
from stockade.engine.changes import Adjusted, OrderConfirmed, OrderPlaced, StockSet
from stockade.engine.models import Order
from stockade.engine.orders import from_timestamp
from stockade.persistence.journal import Batch
from stockade.persistence.schema import SCHEMA_VERSION
from tests.books import assert_books_balance, assert_store_matches
from tests.integration.stores import StoreKind, memory_kind, postgres_kind, sqlite_kind

KINDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=KINDS)
def kind(request, tmp_path) -> StoreKind:
    if request.param == "postgresql":
        return postgres_kind(request.getfixturevalue("postgres_dsn"))
    return {"memory": memory_kind, "sqlite": lambda: sqlite_kind(tmp_path)}[request.param]()


async def test_committed_changes_survive_a_restart(kind):
    async with stockade.open_engine(store=kind.make()) as engine:
        await engine.set_stock("a", 10)
        await engine.set_stock("b", 4)
        held = await engine.place_order({"a": 2, "b": 1}, hold_for=60, idempotency_key="k1")
        sold = await engine.place_order({"a": 3})
        returned = await engine.place_order({"b": 1})
        await engine.cancel(returned.id)
        await engine.adjust_stock("a", -1, reason="damaged")
        levels = {s: await engine.stock(s) for s in "ab"}
        orders = [await engine.get_order(o.id) for o in (held, sold, returned)]
    state = kind.read()
    assert_store_matches(state, levels, orders)
    assert_books_balance(levels, orders)

    async with stockade.open_engine(store=kind.make()) as engine:
        assert {s: await engine.stock(s) for s in "ab"} == levels
        for order in orders:
            assert await engine.get_order(order.id) == order
        again = await engine.place_order({"a": 2, "b": 1}, hold_for=60, idempotency_key="k1")
        assert again == held  # the key survived the restart
        await engine.confirm(held.id)
        assert await engine.stock("a") == StockLevel("a", 4, 0, 4)


async def test_holds_that_lapsed_while_stopped_expire_at_start(kind):
    async with stockade.open_engine(store=kind.make(), wall_clock=lambda: 1e9) as engine:
        await engine.set_stock("a", 5)
        order = await engine.place_order({"a": 2}, hold_for=30)
    # A minute passes with nothing running.
    async with stockade.open_engine(store=kind.make(), wall_clock=lambda: 1e9 + 60) as engine:
        assert (await engine.stock("a")).reserved == 0  # expired by the timer at start
        assert (await engine.get_order(order.id)).status == "expired"
        assert await engine.stock("a") == StockLevel("a", 5, 0, 5)
    assert kind.read().orders[order.id].status == "expired"


async def test_a_replayed_batch_changes_nothing_and_a_gap_is_refused(kind):
    store = kind.make()
    snapshot = await store.load(0.0)
    created = from_timestamp(1_000.0)
    order = Order("o1", "confirmed", {"a": 1}, created, allocations={"a": {"default": 1}})
    batch = Batch(
        snapshot.last_seq + 1,
        snapshot.last_seq + 2,
        [StockSet("a", "default", 5, 5, 1_000.0), OrderPlaced(order, 1_000.0)],
    )
    await store.commit(batch)
    await store.commit(batch)  # a retried commit whose first try did land
    with pytest.raises(stockade.CorruptStore, match="does not follow"):
        await store.commit(Batch(batch.last_seq + 5, batch.last_seq + 5, [batch.events[0]]))
    await store.aclose()
    state = kind.read()
    assert state.products["a"] == (4, 0)
    assert state.last_seq == batch.last_seq
    assert len(state.movements or []) == 2


async def test_a_batch_committed_unheard_is_numbered_once_and_read_live(kind):
    """A commit lands but its answer is lost (a connection dropped between COMMIT and its
    reply): the journal retries, the store finds the batch applied and writes nothing twice,
    and a reader following the feed live gets every event once, in seq order, without
    waiting for a later commit."""
    store = kind.make()
    commit = store.commit
    losing: list[bool] = []

    async def commit_and_lose_the_answer(batch: Batch) -> list[stockade.Event]:
        published: list[stockade.Event] = await commit(batch)
        if losing:
            losing.clear()
            raise stockade.StoreUnavailable("the connection was lost before COMMIT answered")
        return published

    store.commit = commit_and_lose_the_answer
    async with stockade.open_engine(store=store, durability="durable") as engine:
        await engine.set_stock("a", 5)
        _, before = await engine.event_page(0)
        got: list[stockade.Event] = []
        reader = engine.events(before)

        async def follow(count: int) -> None:
            got.extend([await reader.__anext__() for _ in range(count)])

        with trio.fail_after(30):  # a guard: a reader left waiting would hang the test
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, 2)
                await trio.testing.wait_all_tasks_blocked()
                losing.append(True)
                await engine.set_stock("b", 5)  # lands unheard; nothing commits after it
        assert engine.statistics().journal.store_errors == 1
        written, head = await engine.event_page(before)
    assert [e.seq for e in written] == list(range(before + 1, head + 1))  # no gap, no twice
    assert [e.type for e in written] == ["stock.changed", "product.back_in_stock"]
    assert got == written
    assert kind.read().products == {"a": (5, 0), "b": (5, 0)}


def _breaking_batch(how: str, first_seq: int, order: Order) -> Batch:
    if how == "oversold":  # confirms more than the product has
        oversold = msgspec.structs.replace(
            order, status="confirmed", lines={"a": 10}, allocations={"a": {"default": 10}}
        )
        return Batch(first_seq, first_seq, [OrderConfirmed(oversold, 1_001.0)])
    if how == "unknown-row":  # takes units from a (sku, location) the store has no row for
        return Batch(first_seq, first_seq, [Adjusted("b", "default", -3, "loss", 1_001.0)])
    return Batch(first_seq, first_seq, [OrderPlaced(order, 1_001.0)])  # the same order again


@pytest.mark.parametrize("how", ["oversold", "placed-twice", "unknown-row"])
async def test_a_batch_the_store_must_refuse_is_corrupt_and_writes_nothing(kind, how):
    store = kind.make()
    snapshot = await store.load(0.0)
    held = Order("o1", "reserved", {"a": 1}, from_timestamp(1_000.0), from_timestamp(1_060.0),
                 allocations={"a": {"default": 1}})  # fmt: skip
    first = Batch(
        snapshot.last_seq + 1,
        snapshot.last_seq + 2,
        [StockSet("a", "default", 5, 5, 1_000.0), OrderPlaced(held, 1_000.0)],
    )
    await store.commit(first)
    with pytest.raises(stockade.CorruptStore):
        await store.commit(_breaking_batch(how, first.last_seq + 1, held))
    await store.aclose()
    state = kind.read()
    assert state.products == {"a": (5, 1)}
    assert state.orders == {"o1": held}
    assert state.last_seq == first.last_seq
    assert len(state.movements or []) == 2


async def test_many_concurrent_orders_commit_in_few_batches(kind):
    async with stockade.open_engine(store=kind.make()) as engine:
        await engine.set_stock("hot", 300)
        sold = []

        async def buyer():
            with contextlib.suppress(stockade.OutOfStock):
                sold.append(await engine.place_order({"hot": 1}))

        async with trio.open_nursery() as nursery:
            for _ in range(400):
                nursery.start_soon(buyer)
        stats = engine.statistics()
        level = await engine.stock("hot")
    assert len(sold) == 300 and level.on_hand == 0
    assert stats.journal.batches < 100  # group commit: one commit serves many callers
    assert_store_matches(kind.read(), {"hot": level}, sold)


def set_schema_version(kind: StoreKind, version: int, database: str) -> None:
    if kind.name == "sqlite":
        import sqlite3

        conn = sqlite3.connect(database)
        with conn:
            conn.execute("UPDATE stockade_state SET schema_version = ?", (version,))
        conn.close()
    else:
        import asyncio

        import asyncpg

        async def bump() -> None:
            conn = await asyncpg.connect(database)
            await conn.execute("UPDATE stockade_state SET schema_version = $1", version)
            await conn.close()

        asyncio.run(bump())


@pytest.mark.parametrize("name", ["sqlite", "postgresql"])
async def test_a_newer_schema_is_refused_and_left_alone(name, request, tmp_path):
    if name == "sqlite":
        database = str(tmp_path / "stock.db")
        kind = sqlite_kind(tmp_path)
    else:
        database = request.getfixturevalue("postgres_dsn")
        kind = postgres_kind(database)
    async with stockade.open_engine(store=kind.make()) as engine:
        await engine.set_stock("a", 3)
    assert kind.read().products["a"] == (3, 0)  # migrated from an empty database
    set_schema_version(kind, SCHEMA_VERSION + 1, database)
    with pytest.raises(stockade.IncompatibleStore, match="newer than this stockade"):
        async with stockade.open_engine(store=kind.make()):
            pass  # pragma: no cover
    set_schema_version(kind, SCHEMA_VERSION, database)
    async with stockade.open_engine(store=kind.make()) as engine:  # and nothing was changed
        assert (await engine.stock("a")).on_hand == 3


async def test_deactivating_a_location_reports_what_it_changed_for_every_product(kind):
    """No unit moves, yet available does: each product stocked there gets a stock.changed
    for that location, and sold-out / back-in-stock as it crosses zero; a product elsewhere
    gets nothing. The store remembers the side across a restart."""
    async with stockade.open_engine(store=kind.make()) as engine:
        await engine.set_location("w2", "Annex", priority=1)
        await engine.set_stock("only-w2", 3, "w2")
        await engine.set_stock("both", 2, "w2")
        await engine.set_stock("both", 4)
        await engine.set_stock("elsewhere", 5)
        await engine.place_order({"both": 1}, location="w2", hold_for=60)
        _, before = await engine.event_page(0, 1000)
        await engine.set_location("w2", "Annex", priority=1, active=False)
        off, head = await engine.event_page(before, 1000)
    seen = [(e.type, e.data["stock_level"]["sku"]) for e in off]
    assert seen == [("stock.changed", "both"), ("stock.changed", "only-w2"),
                    ("product.sold_out", "only-w2")]  # fmt: skip
    by_sku = {e.data["location_level"]["sku"]: e.data for e in off if e.type == "stock.changed"}
    assert by_sku["only-w2"]["location_level"] == {"sku": "only-w2", "location": "w2",
        "on_hand": 3, "reserved": 0, "available": 0, "active": False}  # fmt: skip
    assert by_sku["both"]["stock_level"] == {"sku": "both", "on_hand": 6, "reserved": 1,
                                             "available": 4}  # fmt: skip
    async with stockade.open_engine(store=kind.make()) as engine:
        assert (await engine.stock("only-w2")).available == 0
        await engine.set_location("w2", "Annex", priority=1, active=True)
        await engine.set_location("w2", "Annex wing", priority=1, active=True)  # no flip
        back, _ = await engine.event_page(head, 1000)
    assert [(e.type, e.data["stock_level"]["sku"], e.data["stock_level"]["available"])
            for e in back] == [("stock.changed", "both", 5), ("stock.changed", "only-w2", 3),
                               ("product.back_in_stock", "only-w2", 3)]  # fmt: skip
