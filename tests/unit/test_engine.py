from datetime import timedelta

import pytest
import trio
import trio.lowlevel
import trio.testing

import stockade
from stockade import (
    EngineClosed,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    OrderNotFound,
    OutOfStock,
    Overloaded,
    StockConflict,
    StockLevel,
    UnknownProduct,
)
from tests.books import assert_books_balance, assert_store_matches
from tests.fakes import StalledStore, stalled_hold


async def test_the_design_walkthrough(engine):
    assert await engine.set_stock("sku-1", on_hand=10) == StockLevel("sku-1", 10, 0, 10)
    assert (await engine.adjust_stock("sku-1", delta=5, reason="restock")).on_hand == 15
    order = await engine.place_order(
        {"sku-1": 2}, hold_for=timedelta(minutes=15), idempotency_key="cart-42"
    )
    assert order.status == "reserved" and order.lines == {"sku-1": 2}
    assert await engine.stock("sku-1") == StockLevel("sku-1", 15, 2, 13)
    assert (await engine.confirm(order.id)).status == "confirmed"
    assert await engine.stock("sku-1") == StockLevel("sku-1", 13, 0, 13)
    assert (await engine.cancel(order.id)).status == "cancelled"  # a return
    assert await engine.stock("sku-1") == StockLevel("sku-1", 15, 0, 15)
    assert (await engine.get_order(order.id)).status == "cancelled"


async def test_direct_purchase_is_confirmed_at_once(engine):
    await engine.set_stock("a", 3)
    order = await engine.place_order({"a": 3})
    assert order.status == "confirmed" and order.expires_at is None
    assert await engine.stock("a") == StockLevel("a", 0, 0, 0)


async def test_durable_answers_come_after_the_commit(engine, store):
    await engine.set_stock("a", 3)
    order = await engine.place_order({"a": 1}, hold_for=60)
    assert store.state.orders[order.id].status == "reserved"
    await engine.confirm(order.id)
    assert store.state.orders[order.id].status == "confirmed"
    assert store.state.products["a"] == (2, 0)


async def test_all_or_nothing_gives_back_taken_lines(engine):
    await engine.set_stock("a", 5)
    await engine.set_stock("b", 1)
    await engine.set_stock("c", 5)
    with pytest.raises(OutOfStock) as caught:
        await engine.place_order({"c": 2, "b": 2, "a": 1}, hold_for=60)
    assert caught.value.shortages == {"b": (2, 1)}
    for sku, on_hand in (("a", 5), ("b", 1), ("c", 5)):
        assert await engine.stock(sku) == StockLevel(sku, on_hand, 0, on_hand)
    assert engine.statistics().orders == 0


async def test_out_of_stock_reports_every_short_line(engine):
    await engine.set_stock("a", 1)
    await engine.set_stock("b", 0)
    with pytest.raises(OutOfStock) as caught:
        await engine.place_order({"a": 2, "b": 1})
    assert caught.value.shortages == {"a": (2, 1), "b": (1, 0)}


async def test_holds_expire_exactly_at_their_deadline(engine, autojump_clock):
    await engine.set_stock("a", 5)
    order = await engine.place_order({"a": 2}, hold_for=timedelta(seconds=30))
    await trio.sleep(29.999)
    assert (await engine.get_order(order.id)).status == "reserved"
    assert (await engine.stock("a")).reserved == 2
    await trio.sleep(0.002)
    assert (await engine.stock("a")).reserved == 0  # the timer released it, unasked
    assert (await engine.get_order(order.id)).status == "expired"
    with pytest.raises(InvalidTransition):
        await engine.confirm(order.id)
    assert (await engine.cancel(order.id)).status == "expired"
    assert engine.statistics().expired == 1


async def test_a_confirm_after_the_deadline_fails_before_the_timer_runs(engine, autojump_clock):
    await engine.set_stock("a", 5)
    order = await engine.place_order({"a": 1}, hold_for=10)
    engine._expiry.stop()  # the timer never runs: only the read-time decision is left
    await trio.sleep(10)
    with pytest.raises(InvalidTransition):
        await engine.confirm(order.id)
    assert (await engine.stock("a")).reserved == 0


async def test_later_holds_do_not_delay_earlier_ones(engine, autojump_clock):
    await engine.set_stock("a", 5)
    late = await engine.place_order({"a": 1}, hold_for=100)
    early = await engine.place_order({"a": 1}, hold_for=5)
    await trio.sleep(5.001)
    assert (await engine.get_order(early.id)).status == "expired"
    assert (await engine.get_order(late.id)).status == "reserved"
    assert (await engine.stock("a")).reserved == 1


async def test_confirmed_and_cancelled_holds_do_not_expire(engine, autojump_clock):
    await engine.set_stock("a", 5)
    kept = await engine.place_order({"a": 1}, hold_for=5)
    dropped = await engine.place_order({"a": 1}, hold_for=5)
    await engine.confirm(kept.id)
    await engine.cancel(dropped.id)
    await trio.sleep(10)
    assert (await engine.get_order(kept.id)).status == "confirmed"
    assert (await engine.get_order(dropped.id)).status == "cancelled"
    assert await engine.stock("a") == StockLevel("a", 4, 0, 4)
    assert engine.statistics().expired == 0


async def test_repeated_confirm_and_cancel_move_stock_once(engine):
    await engine.set_stock("a", 5)
    order = await engine.place_order({"a": 2}, hold_for=60)
    for _ in range(3):
        assert (await engine.confirm(order.id)).status == "confirmed"
    assert (await engine.stock("a")).on_hand == 3
    for _ in range(3):
        assert (await engine.cancel(order.id)).status == "cancelled"
    assert (await engine.stock("a")).on_hand == 5
    with pytest.raises(InvalidTransition):
        await engine.confirm(order.id)


async def test_a_cancel_that_allows_no_return_releases_holds_only(engine, store):
    await engine.set_stock("a", 5)
    hold = await engine.place_order({"a": 2}, hold_for=60)
    assert (await engine.cancel(hold.id, allow_return=False)).status == "cancelled"
    assert (await engine.cancel(hold.id, allow_return=False)).status == "cancelled"  # idempotent
    sold = await engine.place_order({"a": 2}, hold_for=60)
    await engine.confirm(sold.id)
    with pytest.raises(InvalidTransition, match="confirmed"):
        await engine.cancel(sold.id, allow_return=False)
    assert (await engine.get_order(sold.id)).status == "confirmed"
    level = await engine.stock("a")
    assert level == StockLevel("a", 3, 0, 3)
    orders = [await engine.get_order(hold.id), await engine.get_order(sold.id)]
    assert_store_matches(store.state, {"a": level}, orders)


async def test_idempotency_key_takes_stock_once(engine):
    await engine.set_stock("a", 5)
    first = await engine.place_order({"a": 2}, idempotency_key="k")
    again = await engine.place_order({"a": 2}, idempotency_key="k")
    assert again == first
    with pytest.raises(IdempotencyConflict):
        await engine.place_order({"a": 3}, idempotency_key="k")
    assert (await engine.stock("a")).on_hand == 3


async def test_concurrent_requests_with_one_key_take_stock_once(engine):
    await engine.set_stock("a", 100)
    orders = []

    async def buy():
        orders.append(await engine.place_order({"a": 1}, idempotency_key="same"))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(buy)
    assert len({o.id for o in orders}) == 1
    assert (await engine.stock("a")).on_hand == 99


async def test_idempotency_keys_are_forgotten_after_their_ttl(autojump_clock):
    async with stockade.open_engine(None, idempotency_ttl=timedelta(seconds=60)) as engine:
        await engine.set_stock("a", 5)
        first = await engine.place_order({"a": 1}, idempotency_key="k")
        await trio.sleep(61)
        second = await engine.place_order({"a": 1}, idempotency_key="k")
        assert second.id != first.id


async def test_last_unit_rush_400_tasks_for_50_units(engine, store):
    await engine.set_stock("hot", 50)
    sold, refused = [], []

    async def buyer(i):
        try:
            sold.append(await engine.place_order({"hot": 1}, hold_for=60 if i % 2 else None))
        except OutOfStock:
            refused.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(400):
            nursery.start_soon(buyer, i)
    assert len(sold) == 50 and len(refused) == 350
    level = await engine.stock("hot")
    assert level.available == 0
    assert_books_balance({"hot": level}, sold, initial={"hot": 50})
    assert_store_matches(store.state, {"hot": level}, sold)


async def test_merchant_updates_during_a_sale_are_not_lost(engine):
    await engine.set_stock("a", 0)
    sold = 0

    async def buyer():
        nonlocal sold
        for _ in range(20):
            try:
                await engine.place_order({"a": 1})
                sold += 1
            except OutOfStock:
                await trio.lowlevel.checkpoint()

    async def restocker():
        for _ in range(100):
            await engine.adjust_stock("a", delta=1, reason="restock")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(restocker)
        for _ in range(20):
            nursery.start_soon(buyer)
    assert (await engine.stock("a")).on_hand == 100 - sold


BAD_ORDERS = [
    ({}, InvalidRequest),  # empty
    ({"a": 0}, InvalidRequest),
    ({"a": -1}, InvalidRequest),
    ({"a": 10**9}, InvalidRequest),  # huge
    ({"a": 1.5}, InvalidRequest),  # not an integer
    ({"a": True}, InvalidRequest),
    ({"a": "1"}, InvalidRequest),
    ({"bad sku!": 1}, InvalidRequest),
    ({"x" * 129: 1}, InvalidRequest),
    ({f"s{i}": 1 for i in range(101)}, InvalidRequest),  # too many lines
    ([("a", 1), ("a", 1)], InvalidRequest),  # duplicate lines
    ([("a",)], InvalidRequest),
    ("a", InvalidRequest),
    ({"nope": 1}, UnknownProduct),
    ({"a": 1, "nope": 1}, UnknownProduct),
]


@pytest.mark.parametrize(("lines", "error"), BAD_ORDERS)
async def test_bad_orders_are_refused_and_change_nothing(engine, store, lines, error):
    await engine.set_stock("a", 5)
    before = (store.state.products.copy(), engine.statistics())
    with pytest.raises(error):
        await engine.place_order(lines)
    assert (store.state.products, engine.statistics()) == before
    assert await engine.stock("a") == StockLevel("a", 5, 0, 5)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"hold_for": 0}, InvalidRequest),
        ({"hold_for": -5}, InvalidRequest),
        ({"hold_for": timedelta(days=2)}, InvalidRequest),
        ({"hold_for": float("nan")}, InvalidRequest),
        ({"hold_for": "10"}, InvalidRequest),
        ({"idempotency_key": ""}, InvalidRequest),
        ({"idempotency_key": "has space"}, InvalidRequest),
        ({"idempotency_key": "k" * 256}, InvalidRequest),
    ],
)
async def test_bad_order_options_are_refused(engine, kwargs, error):
    await engine.set_stock("a", 5)
    with pytest.raises(error):
        await engine.place_order({"a": 1}, **kwargs)
    assert (await engine.stock("a")).available == 5


async def test_bad_merchant_calls_are_refused_and_change_nothing(engine):
    await engine.set_stock("a", 5)
    await engine.place_order({"a": 3}, hold_for=60)
    for call, error in [
        (engine.set_stock("a", -1), InvalidRequest),
        (engine.set_stock("a", 2), StockConflict),  # below what is reserved
        (engine.set_stock("a", 10**13), InvalidRequest),
        (engine.set_stock("bad sku", 1), InvalidRequest),
        (engine.set_stock("a", "5"), InvalidRequest),
        (engine.adjust_stock("a", -3), StockConflict),  # on_hand 2 < reserved 3
        (engine.adjust_stock("a", 10**12), StockConflict),  # above MAX_STOCK
        (engine.adjust_stock("a", 0), InvalidRequest),
        (engine.adjust_stock("nope", 1), UnknownProduct),
        (engine.adjust_stock("a", 1, reason=5), InvalidRequest),
        (engine.stock("nope"), UnknownProduct),
        (engine.stock("bad sku"), InvalidRequest),
        (engine.confirm("missing"), OrderNotFound),
        (engine.cancel("missing"), OrderNotFound),
        (engine.get_order("missing"), OrderNotFound),
    ]:
        with pytest.raises(error) as raised:
            await call
        assert type(raised.value) is error  # a conflict with stock now, or input never valid
    assert await engine.stock("a") == StockLevel("a", 5, 3, 2)


async def test_a_cancelled_caller_never_leaves_stock_taken(engine):
    await engine.set_stock("a", 1000)
    await engine.set_stock("b", 1000)
    placed = []

    async def buyer():
        placed.append(await engine.place_order({"a": 1, "b": 1}, hold_for=60))

    for _ in range(50):
        with trio.move_on_after(0):  # cancelled at its first chance, mid-order
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(buyer)
                await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()
    orders = list(engine._book.orders.values())
    levels = {sku: await engine.stock(sku) for sku in ("a", "b")}
    assert_books_balance(levels, orders, initial={"a": 1000, "b": 1000})


async def test_full_mailbox_is_overloaded_not_unbounded(autojump_clock):
    async with stockade.open_engine(None, mailbox_size=5) as engine:
        await engine.set_stock("a", 1000)
        outcomes = []

        async def buyer():
            try:
                await engine.place_order({"a": 1})
                outcomes.append("ok")
            except Overloaded:
                outcomes.append("overloaded")

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(buyer)
        assert outcomes.count("ok") == 5 and outcomes.count("overloaded") == 15
        assert (await engine.stock("a")).on_hand == 995


@pytest.mark.parametrize("call", ["place", "change", "extend", "confirm", "cancel"])
async def test_a_repeated_call_answers_no_sooner_than_the_call_it_repeats(call, autojump_clock):
    """A retry (the same idempotency key, or a confirm or cancel delivered twice) answers with
    the first call's outcome; in durable mode not before that outcome is committed, or a crash
    could lose a change the retry has acknowledged (a payment webhook answered "confirmed" on
    its second delivery never sends again, and the lost confirm lets the hold expire)."""
    async with stalled_hold() as (engine, store, order):
        calls = {
            "place": lambda: engine.place_order({"a": 2}, hold_for=600, idempotency_key="k"),
            "change": lambda: engine.change_order(order.id, {"a": 2}, idempotency_key="k"),
            "extend": lambda: engine.extend(order.id, 900, idempotency_key="k"),
            "confirm": lambda: engine.confirm(order.id),
            "cancel": lambda: engine.cancel(order.id),
        }
        answered: list[int] = []

        async def attempt(n: int) -> None:
            await calls[call]()
            answered.append(n)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(attempt, 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(attempt, 2)
            await trio.testing.wait_all_tasks_blocked()
            assert answered == []  # the first waits for its commit, and so must the repeat
            store.resume()
        assert sorted(answered) == [1, 2]
        assert engine.statistics().journal.buffered == 0


async def test_full_journal_is_overloaded(autojump_clock):
    store = StalledStore()
    async with stockade.open_engine(store=store, journal_size=3, durability="fast") as engine:
        await engine.set_stock("a", 5)
        await trio.testing.wait_all_tasks_blocked()  # the writer is stuck committing "a"
        for sku in "bc":
            await engine.set_stock(sku, 5)  # with "a", 3 events are now uncommitted
        with pytest.raises(Overloaded):
            await engine.place_order({"a": 1})
        assert (await engine.stock("a")).on_hand == 5
        store.resume()
    assert store.state.products["c"] == (5, 0)  # closing drained the journal


async def test_closing_answers_callers_in_flight_and_refuses_new_ones(store):
    async with stockade.open_engine(store=store) as engine:
        await engine.set_stock("a", 100)
        done = []

        async def buyer():
            await engine.place_order({"a": 1})
            done.append(1)

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(buyer)
    assert len(done) == 10
    assert store.state.products["a"] == (90, 0)
    with pytest.raises(EngineClosed):
        await engine.place_order({"a": 1})


async def test_restart_from_a_store_keeps_orders_holds_and_keys(store, autojump_clock):
    async with stockade.open_engine(store=store) as engine:
        await engine.set_stock("a", 10)
        held = await engine.place_order({"a": 2}, hold_for=30, idempotency_key="k")
        sold = await engine.place_order({"a": 3})
    async with stockade.open_engine(store=store) as engine:
        assert await engine.stock("a") == StockLevel("a", 7, 2, 5)
        assert (await engine.get_order(sold.id)).status == "confirmed"
        assert await engine.place_order({"a": 2}, hold_for=30, idempotency_key="k") == held
        await trio.sleep(31)
        assert (await engine.get_order(held.id)).status == "expired"
        assert (await engine.stock("a")).reserved == 0


async def test_unsupported_database_urls_are_refused():
    for url in ("mysql://x", "nonsense", "sqlite:///", "postgresql"):
        with pytest.raises(InvalidRequest):
            async with stockade.open_engine(url):
                pass  # pragma: no cover
