"""Stock locations and channels through the engine (design.md §7): the calls, every bad input,
and what deactivating a location does."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import stockade
from stockade import (
    Channel,
    Engine,
    EngineClosed,
    InvalidRequest,
    Location,
    LocationLevel,
    MemoryStore,
    OutOfStock,
    Overloaded,
    StockLevel,
    UnknownChannel,
    UnknownLocation,
    UnknownProduct,
)
from stockade.engine import locations as locations_module
from tests.books import assert_location_books_balance
from tests.fakes import StalledStore


def at(levels: list[LocationLevel]) -> dict[str, tuple[int, int, int]]:
    """``{location: (on_hand, reserved, available)}``."""
    return {x.location: (x.on_hand, x.reserved, x.available) for x in levels}


async def per_location(engine: Engine, sku: str) -> dict[str, tuple[int, int, int]]:
    return at(await engine.stock_by_location(sku))


async def everything(engine: Engine, store: MemoryStore, skus: str = "ab") -> Any:
    """What a refused call must leave as it was: the engine's view and the store's."""
    levels = {}
    for sku in skus:
        if engine.has_product(sku):
            levels[sku] = (await engine.stock(sku), await engine.stock_by_location(sku))
    state = store.state
    return (
        engine.locations(),
        engine.channels(),
        levels,
        dict(state.stock),
        dict(state.locations),
        dict(state.channels),
        state.last_seq,
        engine.statistics().orders,
    )


async def test_locations_start_with_default_and_are_listed_in_allocation_order(engine, store):
    assert engine.locations() == [Location("default", "", 0, True)]
    berlin = await engine.set_location("berlin", name="Berlin", priority=2)
    assert berlin == Location("berlin", "Berlin", 2, True)
    await engine.set_location("aachen", priority=2)
    await engine.set_location("zurich", priority=-1, active=False)
    assert [x.id for x in engine.locations()] == ["zurich", "default", "aachen", "berlin"]
    # replacing one changes it in place (no second entry) and re-sorts
    assert await engine.set_location("berlin", name="B", priority=-5) == Location("berlin", "B", -5)
    assert [x.id for x in engine.locations()] == ["berlin", "zurich", "default", "aachen"]
    assert store.state.locations["berlin"] == Location("berlin", "B", -5, True)
    assert store.state.locations["zurich"].active is False
    assert engine.statistics().locations == 4


async def test_channels_are_created_replaced_and_listed_by_id(engine, store):
    assert engine.channels() == []
    await engine.set_location("berlin")
    await engine.set_location("paris")
    assert await engine.set_channel("fr", ["paris"]) == Channel("fr", ["paris"])
    assert await engine.set_channel("de", ("berlin", "default")) == Channel(
        "de", ["berlin", "default"]
    )
    await engine.set_channel("fr", ["paris", "default"])
    assert engine.channels() == [
        Channel("de", ["berlin", "default"]),
        Channel("fr", ["paris", "default"]),
    ]
    assert store.state.channels["fr"] == Channel("fr", ["paris", "default"])


BAD_LOCATIONS = [
    ({"id": "bad id"}, InvalidRequest),
    ({"id": ""}, InvalidRequest),
    ({"id": "x" * 129}, InvalidRequest),
    ({"id": 5}, InvalidRequest),
    ({"id": "ok", "name": 5}, InvalidRequest),
    ({"id": "ok", "name": "n" * 201}, InvalidRequest),
    ({"id": "ok", "priority": 1.5}, InvalidRequest),
    ({"id": "ok", "priority": True}, InvalidRequest),
    ({"id": "ok", "priority": 10**7}, InvalidRequest),
    ({"id": "ok", "active": 1}, InvalidRequest),
    ({"id": "ok", "active": None}, InvalidRequest),
]


@pytest.mark.parametrize(("kwargs", "error"), BAD_LOCATIONS)
async def test_bad_locations_are_refused_and_change_nothing(engine, store, kwargs, error):
    await engine.set_location("berlin")
    before = await everything(engine, store)
    with pytest.raises(error):
        await engine.set_location(**kwargs)
    assert await everything(engine, store) == before


BAD_CHANNELS = [
    ("bad id", ["berlin"], InvalidRequest),
    ("", ["berlin"], InvalidRequest),
    (None, ["berlin"], InvalidRequest),
    ("de", [], InvalidRequest),
    ("de", "berlin", InvalidRequest),  # a string, not a list of ids
    ("de", 5, InvalidRequest),
    ("de", ["berlin", "berlin"], InvalidRequest),
    ("de", ["berlin", "nowhere"], UnknownLocation),  # a channel naming an unknown location
    ("de", ["bad id"], InvalidRequest),
]


@pytest.mark.parametrize(("channel", "names", "error"), BAD_CHANNELS)
async def test_bad_channels_are_refused_and_change_nothing(engine, store, channel, names, error):
    await engine.set_location("berlin")
    await engine.set_channel("de", ["default"])
    before = await everything(engine, store)
    with pytest.raises(error):
        await engine.set_channel(channel, names)
    assert await everything(engine, store) == before
    assert engine.channels() == [Channel("de", ["default"])]


async def test_stock_is_kept_per_location_and_summed_per_product(engine, store):
    await engine.set_location("berlin", priority=1)
    await engine.set_location("paris", priority=2)
    assert await engine.set_stock("a", 5, location="berlin") == StockLevel("a", 5, 0, 5)
    assert await engine.set_stock("a", 3) == StockLevel("a", 8, 0, 8)
    assert await engine.adjust_stock("a", 4, reason="restock", location="paris") == StockLevel(
        "a", 12, 0, 12
    )
    assert await engine.adjust_stock("a", -1, location="berlin") == StockLevel("a", 11, 0, 11)
    assert await engine.stock_by_location("a") == [
        LocationLevel("a", "default", 3, 0, 3, True),
        LocationLevel("a", "berlin", 4, 0, 4, True),
        LocationLevel("a", "paris", 4, 0, 4, True),
    ]
    assert store.state.stock == {("a", "berlin"): (4, 0), ("a", "default"): (3, 0),
                                 ("a", "paris"): (4, 0)}  # fmt: skip
    # a product created away from default lists only where its stock is
    await engine.set_stock("b", 2, location="paris")
    assert await per_location(engine, "b") == {"paris": (2, 0, 2)}
    assert await engine.stock("b") == StockLevel("b", 2, 0, 2)


async def test_stock_at_a_location_cannot_go_below_what_is_reserved_there(engine, store):
    await engine.set_location("berlin", priority=1)
    await engine.set_stock("a", 2)
    await engine.set_stock("a", 5, location="berlin")
    await engine.place_order({"a": 4}, hold_for=60)  # 2 at default, 2 at berlin
    assert await per_location(engine, "a") == {"default": (2, 2, 0), "berlin": (5, 2, 3)}
    before = await everything(engine, store)
    for call in (
        engine.set_stock("a", 1, location="berlin"),
        engine.set_stock("a", 1),
        engine.adjust_stock("a", -4, location="berlin"),
        engine.adjust_stock("a", -1),
    ):
        with pytest.raises(InvalidRequest, match="reserved"):
            await call
    assert await everything(engine, store) == before
    # down to exactly what is reserved is allowed
    await engine.set_stock("a", 2, location="berlin")
    assert await per_location(engine, "a") == {"default": (2, 2, 0), "berlin": (2, 2, 0)}


async def test_bad_stock_calls_at_locations_are_refused_and_change_nothing(engine, store):
    await engine.set_location("berlin")
    await engine.set_channel("de", ["berlin"])
    await engine.set_stock("a", 5, location="berlin")
    before = await everything(engine, store)
    for call, error in [
        (engine.set_stock("a", 1, location="nowhere"), UnknownLocation),
        (engine.set_stock("new", 1, location="nowhere"), UnknownLocation),
        (engine.set_stock("a", 1, location="bad id"), InvalidRequest),
        (engine.set_stock("a", 1, location=None), InvalidRequest),
        (engine.adjust_stock("a", 1, location="nowhere"), UnknownLocation),
        (engine.adjust_stock("a", 1, location="bad id"), InvalidRequest),
        (engine.stock("a", channel="nowhere"), UnknownChannel),
        (engine.stock("a", channel="bad id"), InvalidRequest),
        (engine.stock("nope", channel="de"), UnknownProduct),
        (engine.stock_by_location("nope"), UnknownProduct),
        (engine.stock_by_location("bad sku"), InvalidRequest),
    ]:
        with pytest.raises(error):
            await call
    assert await everything(engine, store) == before
    assert not engine.has_product("new")


async def test_transfers_move_stock_between_locations_atomically(engine, store):
    await engine.set_location("berlin", priority=1)
    await engine.set_stock("a", 10)
    moved = await engine.transfer("a", 4, "default", "berlin", reason="rebalance")
    assert moved == [
        LocationLevel("a", "default", 6, 0, 6, True),
        LocationLevel("a", "berlin", 4, 0, 4, True),
    ]
    assert await engine.stock("a") == StockLevel("a", 10, 0, 10)
    # both sides are movements of one change
    last = [m for m in store.state.movements or [] if m.kind == "transferred"]
    assert [(m.location, m.d_on_hand, m.reason) for m in last] == [
        ("default", -4, "rebalance"),
        ("berlin", 4, "rebalance"),
    ]
    assert last[0].seq == last[1].seq
    # all of a location's stock may leave it
    await engine.transfer("a", 6, "default", "berlin")
    assert await per_location(engine, "a") == {"default": (0, 0, 0), "berlin": (10, 0, 10)}
    assert engine.statistics().transfers == 2


async def test_bad_transfers_are_refused_and_change_nothing(engine, store):
    await engine.set_location("berlin", priority=1)
    await engine.set_stock("a", 5)
    await engine.set_stock("b", 1, location="berlin")
    await engine.place_order({"a": 3}, hold_for=60)  # 2 available at default
    before = await everything(engine, store)
    for args, kwargs, error in [
        (("a", 1, "nowhere", "berlin"), {}, UnknownLocation),
        (("a", 1, "default", "nowhere"), {}, UnknownLocation),
        (("a", 1, "bad id", "berlin"), {}, InvalidRequest),
        (("a", 1, "default", "default"), {}, InvalidRequest),
        (("a", 0, "default", "berlin"), {}, InvalidRequest),
        (("a", -1, "default", "berlin"), {}, InvalidRequest),
        (("a", 1.0, "default", "berlin"), {}, InvalidRequest),
        (("a", True, "default", "berlin"), {}, InvalidRequest),
        (("a", 3, "default", "berlin"), {}, OutOfStock),  # 3 on hand free? no: 3 reserved
        (("a", 6, "default", "berlin"), {}, OutOfStock),
        (("b", 1, "default", "berlin"), {}, OutOfStock),  # nothing of b at default
        (("nope", 1, "default", "berlin"), {}, UnknownProduct),
        (("bad sku", 1, "default", "berlin"), {}, InvalidRequest),
        (("a", 1, "default", "berlin"), {"reason": 5}, InvalidRequest),
    ]:
        with pytest.raises(error):
            await engine.transfer(*args, **kwargs)
    assert await everything(engine, store) == before
    with pytest.raises(OutOfStock) as caught:
        await engine.transfer("a", 3, "default", "berlin")
    assert caught.value.shortages == {"a": (3, 2)}
    assert engine.statistics().transfers == 0


async def test_an_inactive_location_may_send_and_receive_transfers(engine):
    await engine.set_location("closed", active=False)
    await engine.set_stock("a", 5, location="closed")
    await engine.transfer("a", 2, "closed", "default")
    await engine.transfer("a", 1, "default", "closed")
    assert await per_location(engine, "a") == {"default": (1, 0, 1), "closed": (4, 0, 0)}
    assert await engine.stock("a") == StockLevel("a", 5, 0, 1)


async def test_orders_naming_unknown_locations_or_channels_change_nothing(engine, store):
    await engine.set_location("berlin")
    await engine.set_location("paris")
    await engine.set_channel("fr", ["paris"])
    await engine.set_stock("a", 5, location="berlin")
    await engine.set_stock("a", 5, location="paris")
    before = await everything(engine, store)
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"location": "nowhere"}, UnknownLocation),
        ({"channel": "nowhere"}, UnknownChannel),
        ({"location": "bad id"}, InvalidRequest),
        ({"channel": "bad id"}, InvalidRequest),
        ({"location": 5}, InvalidRequest),
        ({"channel": "fr", "location": "berlin"}, InvalidRequest),  # fr does not sell there
    ]
    for kwargs, error in cases:
        with pytest.raises(error):
            await engine.place_order({"a": 1}, hold_for=60, **kwargs)
    assert await everything(engine, store) == before


async def test_with_every_location_inactive_an_order_is_out_of_stock(engine, store):
    await engine.set_stock("a", 5)  # a single-location product (its hot path)
    await engine.set_location("berlin")
    await engine.set_stock("b", 3, location="berlin")
    await engine.set_stock("b", 2)
    await engine.set_location("default", active=False)
    await engine.set_location("berlin", active=False)
    before = await everything(engine, store)
    with pytest.raises(OutOfStock) as caught:
        await engine.place_order({"a": 1, "b": 1}, hold_for=60)
    assert caught.value.shortages == {"a": (1, 0), "b": (1, 0)}
    for lines in ({"a": 1}, {"b": 1}):
        with pytest.raises(OutOfStock):
            await engine.place_order(lines)
        with pytest.raises(OutOfStock):
            await engine.place_order(lines, location="berlin")
    assert await everything(engine, store) == before
    assert await engine.stock("a") == StockLevel("a", 5, 0, 0)
    assert await engine.stock("b") == StockLevel("b", 5, 0, 0)
    assert engine.products() == [StockLevel("a", 5, 0, 0), StockLevel("b", 5, 0, 0)]


async def test_the_location_bound_through_the_engine(engine, store, monkeypatch):
    monkeypatch.setattr(locations_module, "MAX_LOCATIONS", 4)
    for name in ("l1", "l2", "l3"):  # with default: 4
        await engine.set_location(name)
    before = await everything(engine, store)
    with pytest.raises(InvalidRequest, match="at most 4 locations"):
        await engine.set_location("l4")
    assert await everything(engine, store) == before
    # changing an existing one is still allowed at the bound
    await engine.set_location("l3", priority=7, active=False)
    assert engine.locations()[-1] == Location("l3", "", 7, False)


async def test_the_real_location_bound_is_ten_thousand(engine):
    assert locations_module.MAX_LOCATIONS == 10_000

    async def make(first: int, last: int) -> None:
        for i in range(first, last):
            await engine.set_location(f"l{i}")

    async with trio.open_nursery() as nursery:  # concurrent, so they share commits
        for first in range(1, 10_000, 500):
            nursery.start_soon(make, first, min(first + 500, 10_000))
    assert engine.statistics().locations == 10_000
    with pytest.raises(InvalidRequest, match="at most 10000 locations"):
        await engine.set_location("one-more")
    assert engine.statistics().locations == 10_000


async def test_bad_engine_options_are_refused():
    with pytest.raises(InvalidRequest, match="allocation"):
        async with stockade.open_engine(None, allocation="random"):  # type: ignore[arg-type]
            pass  # pragma: no cover


async def test_books_balance_per_location_after_merchant_moves(engine, store):
    await engine.set_location("berlin", priority=1)
    await engine.set_location("paris", priority=2)
    await engine.set_stock("a", 4)
    await engine.set_stock("a", 6, location="berlin")
    await engine.transfer("a", 3, "berlin", "paris")
    await engine.adjust_stock("a", 2, location="paris")
    order = await engine.place_order({"a": 8}, hold_for=60)
    sold = await engine.place_order({"a": 3})
    net = {("a", "default"): 4, ("a", "berlin"): 3, ("a", "paris"): 5}
    levels = {"a": await engine.stock_by_location("a")}
    assert_location_books_balance(
        levels, [order, sold], net, store.state.movements, {"a": await engine.stock("a")},
        store.state.stock,
    )  # fmt: skip


async def test_a_full_journal_refuses_location_and_channel_changes_without_making_them(
    autojump_clock,
):
    store = StalledStore()
    async with stockade.open_engine(store=store, journal_size=2, durability="fast") as engine:
        await engine.set_location("berlin")
        await trio.testing.wait_all_tasks_blocked()  # the writer is stuck committing it
        await engine.set_location("paris")  # 2 events uncommitted: the journal is full
        before = (engine.locations(), engine.channels())
        for call in (
            engine.set_location("rome"),
            engine.set_location("berlin", active=False),
            engine.set_channel("fr", ["paris"]),
        ):
            with pytest.raises(Overloaded):
                await call
        assert (engine.locations(), engine.channels()) == before
        assert engine._table.is_active("berlin")
        store.resume()
    assert set(store.state.locations) == {"berlin", "paris"}
    assert store.state.channels == {}
    with pytest.raises(EngineClosed):  # a closed engine changes nothing either
        await engine.set_location("late")
    assert [x.id for x in engine.locations()] == ["berlin", "default", "paris"]


async def test_the_per_location_listing_is_the_same_after_a_restart(store):
    """stock_by_location lists every location that ever held the product's stock, before a
    restart and after it, whatever order the store returns its rows in."""
    async with stockade.open_engine(store=store) as engine:
        await engine.set_location("berlin", priority=1)
        await engine.set_stock("a", 3)
        await engine.set_stock("a", 2, location="berlin")
        await engine.place_order({"a": 3})  # default is emptied by a sale
        await engine.set_stock("b", 4)
        await engine.transfer("b", 4, "default", "berlin")  # and by a transfer
        await engine.set_stock("c", 1, location="berlin")  # never had stock at default
        before = {sku: await engine.stock_by_location(sku) for sku in "abc"}
    assert [x.location for x in before["a"]] == ["default", "berlin"]
    assert [x.location for x in before["b"]] == ["default", "berlin"]
    assert [x.location for x in before["c"]] == ["berlin"]
    for rows in (dict(store.state.stock), dict(reversed(store.state.stock.items()))):
        store.state.stock = rows
        async with stockade.open_engine(store=store) as engine:
            assert {sku: await engine.stock_by_location(sku) for sku in "abc"} == before


async def test_update_location_changes_only_what_is_given_and_creates_nothing(engine, store):
    await engine.set_location("w", "Warehouse", priority=3)
    closed = await engine.update_location("w", active=False)
    assert closed == stockade.Location("w", "Warehouse", 3, False)
    _, head = await engine.event_page(0, 1000)
    assert await engine.update_location("w") == closed  # nothing given: nothing written
    assert await engine.update_location("w", priority=3) == closed  # nothing different
    assert (await engine.event_page(head, 1000))[0] == []
    moved = await engine.update_location("w", name="Annex", priority=-1)
    assert moved == stockade.Location("w", "Annex", -1, False)
    assert [loc.id for loc in engine.locations()] == ["w", "default"]
    assert store.state.locations["w"] == moved
    with pytest.raises(stockade.UnknownLocation):
        await engine.update_location("nowhere", active=False)
    with pytest.raises(stockade.InvalidRequest):
        await engine.update_location("w", priority=10**9)
    assert not engine.location_exists("nowhere") and store.state.locations["w"] == moved
