"""Carts through the engine (design.md §8): change_order and extend, their bad inputs, their
races with each other and with expiry, and their idempotency keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

import stockade
from stockade import (
    Engine,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    MemoryStore,
    Order,
    OrderNotFound,
    OutOfStock,
    StockLevel,
    UnknownProduct,
)
from stockade.engine.commands import Take
from stockade.engine.orders import from_timestamp
from tests.books import assert_books_balance, assert_location_books_balance
from tests.fakes import stalled_hold

T0 = 1_000_000_000.0  # the engines' wall clock at start: deadlines are exact floats from it


@pytest.fixture
async def carts(store: MemoryStore) -> AsyncIterator[Engine]:
    """An engine whose clock starts at T0, with max_hold_lifetime of one hour (the tests run
    it on the mock clock: each asks for ``autojump_clock``)."""
    async with stockade.open_engine(
        store=store, durability="durable", wall_clock=lambda: T0 + trio.current_time(),
        max_hold_lifetime=timedelta(hours=1),
    ) as engine:  # fmt: skip
        for sku, on_hand in (("a", 10), ("b", 10), ("c", 10)):
            await engine.set_stock(sku, on_hand)
        yield engine


async def levels(engine: Engine, skus: str = "abc") -> dict[str, StockLevel]:
    return {sku: await engine.stock(sku) for sku in skus}


async def frozen(engine: Engine, store: MemoryStore, order_id: str) -> Any:
    """What a refused cart call must leave as it was."""
    return (
        await levels(engine),
        await engine.get_order(order_id),
        dict(store.state.stock),
        store.state.orders.get(order_id),
        store.state.last_seq,
    )


def now() -> float:
    return T0 + trio.current_time()


# -- change_order ------------------------------------------------------------------------------


async def test_an_edit_grows_shrinks_adds_and_removes_lines(carts, store, autojump_clock):
    order = await carts.place_order({"a": 2, "b": 3}, hold_for=60)
    changed = await carts.change_order(order.id, {"a": 5, "c": 1})
    assert changed.lines == {"a": 5, "c": 1} and changed.status == "reserved"
    assert changed.allocations == {"a": {"default": 5}, "c": {"default": 1}}
    assert changed.expires_at == order.expires_at  # the deadline does not move
    assert changed.created_at == order.created_at
    assert await levels(carts) == {
        "a": StockLevel("a", 10, 5, 5),
        "b": StockLevel("b", 10, 0, 10),
        "c": StockLevel("c", 10, 1, 9),
    }
    assert store.state.orders[order.id] == changed
    shrunk = await carts.change_order(order.id, [("a", 1), ("c", 1)])
    assert shrunk.lines == {"a": 1, "c": 1}
    assert (await carts.stock("a")).reserved == 1
    assert await carts.get_order(order.id) == shrunk
    moves = [(m.sku, m.d_reserved) for m in store.state.movements or [] if m.kind == "changed"]
    assert sorted(moves) == [("a", -4), ("a", 3), ("b", -3), ("c", 1)]
    await carts.confirm(order.id)
    assert await levels(carts) == {
        "a": StockLevel("a", 9, 0, 9),
        "b": StockLevel("b", 10, 0, 10),
        "c": StockLevel("c", 9, 0, 9),
    }
    assert carts.statistics().changed == 2


async def test_an_edit_to_the_same_lines_changes_nothing(carts, store, autojump_clock):
    order = await carts.place_order({"a": 2}, hold_for=60)
    seq = store.state.last_seq
    assert await carts.change_order(order.id, {"a": 2}) == order
    assert store.state.last_seq == seq
    assert carts.statistics().changed == 0


async def test_an_edit_allocates_as_the_order_was_placed_and_shrinks_from_the_last(
    carts, autojump_clock
):
    await carts.set_location("north", priority=1)
    await carts.set_location("south", priority=2)
    await carts.set_channel("south-only", ["south"])
    await carts.set_stock("a", 3, location="north")
    await carts.set_stock("a", 10, location="south")
    order = await carts.place_order({"a": 12}, hold_for=60)
    assert order.allocations == {"a": {"default": 10, "north": 2}}
    grown = await carts.change_order(order.id, {"a": 15})
    assert grown.allocations == {"a": {"default": 10, "north": 3, "south": 2}}
    shrunk = await carts.change_order(order.id, {"a": 9})  # south, then north, give back first
    assert shrunk.allocations == {"a": {"default": 9}}
    pinned = await carts.place_order({"a": 1}, hold_for=60, location="north")
    grown = await carts.change_order(pinned.id, {"a": 3})
    assert grown.allocations == {"a": {"north": 3}}
    with pytest.raises(OutOfStock):  # the pinned location has nothing more, default has 1
        await carts.change_order(pinned.id, {"a": 4})
    in_channel = await carts.place_order({"a": 1}, hold_for=60, channel="south-only")
    assert (await carts.change_order(in_channel.id, {"a": 4})).allocations == {"a": {"south": 4}}
    orders = [await carts.get_order(o.id) for o in (order, pinned, in_channel)]
    assert_location_books_balance(
        {"a": await carts.stock_by_location("a")}, orders,
        {("a", "default"): 10, ("a", "north"): 3, ("a", "south"): 10},
    )  # fmt: skip


async def test_a_short_edit_changes_nothing_and_names_every_short_line(
    carts, store, autojump_clock
):
    await carts.set_stock("d", 1)
    order = await carts.place_order({"a": 2, "b": 8, "d": 1}, hold_for=60)
    other = await carts.place_order({"c": 9}, hold_for=60)
    before = await frozen(carts, store, order.id)
    with pytest.raises(OutOfStock) as caught:
        # a grows within stock, b and c are short, d goes: none of it may happen
        await carts.change_order(order.id, {"a": 6, "b": 11, "c": 2})
    assert caught.value.shortages == {"b": (3, 2), "c": (2, 1)}
    assert await frozen(carts, store, order.id) == before
    assert (await carts.get_order(other.id)).lines == {"c": 9}
    assert carts.statistics().changed == 0
    # and the order still works as it was
    await carts.confirm(order.id)
    assert await carts.stock("d") == StockLevel("d", 0, 0, 0)


async def test_concurrent_edits_of_one_order_are_serialised(carts, store, autojump_clock):
    """Two tasks edit one cart at once: whichever goes second starts from the first's result
    (had it started from the lines both saw, a's growth would have been taken twice)."""
    order = await carts.place_order({"a": 1}, hold_for=60)
    edits = {"only-a": {"a": 5}, "a-and-b": {"a": 5, "b": 1}}
    finished: list[Order] = []

    async def edit(lines: dict[str, int]) -> None:
        finished.append(await carts.change_order(order.id, lines))

    async with trio.open_nursery() as nursery:
        for lines in edits.values():
            nursery.start_soon(edit, lines)
    assert sorted(o.lines == edits["only-a"] for o in finished) == [False, True]
    # The edit applied second is the cart now. Both wait for the same commit, and trio may
    # wake them in either order, so the one that returned last need not be that one.
    final = await carts.get_order(order.id)
    assert final in finished and final == store.state.orders[order.id]
    assert (await carts.stock("a")).reserved == 5
    assert (await carts.stock("b")).reserved == final.lines.get("b", 0)
    assert carts.statistics().changed == 2


@pytest.mark.parametrize("then", ["cancel", "confirm", "extend"])
async def test_moves_of_an_order_wait_for_its_edit(carts, store, then, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=60)
    results: dict[str, Order] = {}

    async def edit() -> None:
        results["edit"] = await carts.change_order(order.id, {"a": 2, "b": 2})

    async def move() -> None:
        if then == "extend":
            results[then] = await carts.extend(order.id, 120)
        else:
            results[then] = await getattr(carts, then)(order.id)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(edit)
        await trio.lowlevel.checkpoint()  # the edit is waiting for its takes
        nursery.start_soon(move)
    assert results["edit"].lines == {"a": 2, "b": 2}
    assert results[then].lines == {"a": 2, "b": 2}
    assert await carts.get_order(order.id) == results[then] == store.state.orders[order.id]
    assert_books_balance(await levels(carts), [results[then]], dict.fromkeys("abc", 10))


async def test_many_concurrent_edits_of_one_cart_keep_the_books(carts, store, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=600)
    carts_lines = [
        {"a": 1 + i % 4, "b": i % 3 + 1} if i % 2 else {"c": 1 + i % 5} for i in range(40)
    ]
    outcomes = []

    async def edit(lines: dict[str, int]) -> None:
        try:
            outcomes.append(await carts.change_order(order.id, lines))
        except OutOfStock:
            outcomes.append(None)

    async with trio.open_nursery() as nursery:
        for lines in carts_lines:
            nursery.start_soon(edit, lines)
    final = await carts.get_order(order.id)
    assert final.lines in carts_lines
    assert_books_balance(await levels(carts), [final], dict.fromkeys("abc", 10))
    assert store.state.orders[order.id] == final


async def test_an_edit_racing_expiry_happens_before_it_or_not_at_all(
    carts, store, monkeypatch, autojump_clock
):
    """While an edit waits for its takes, the hold's deadline passes and the timer fires. The
    edit still applies (it was decided before the deadline) and the hold then expires with
    the edited lines: never a half-edited order, never units left held."""
    order = await carts.place_order({"a": 2, "b": 2}, hold_for=10)
    post = carts._dispatcher.post

    def post_and_let_the_deadline_pass(sku: str, command: Any, *args: Any, **kw: Any) -> None:
        if type(command) is Take and command.order_id == order.id:
            autojump_clock.jump(20)  # the timer is due as soon as anything checkpoints
        post(sku, command, *args, **kw)

    monkeypatch.setattr(carts._dispatcher, "post", post_and_let_the_deadline_pass)
    changed = await carts.change_order(order.id, {"a": 3, "c": 1})
    assert changed.lines == {"a": 3, "c": 1}
    after = await carts.get_order(order.id)
    assert after.status == "expired" and after.lines == {"a": 3, "c": 1}
    assert await levels(carts) == {s: StockLevel(s, 10, 0, 10) for s in "abc"}
    assert store.state.orders[order.id] == after
    assert carts.statistics().expired == 1
    # and an edit arriving after the deadline, before the timer, is refused and changes nothing
    late = await carts.place_order({"a": 1}, hold_for=10)
    carts._expiry.stop()
    await trio.sleep(10)
    with pytest.raises(InvalidTransition):
        await carts.change_order(late.id, {"a": 2})
    assert (await carts.get_order(late.id)).lines == {"a": 1}
    assert (await carts.stock("a")).reserved == 0


async def test_a_short_edit_racing_expiry_leaves_the_old_lines_expired(
    carts, store, autojump_clock, monkeypatch
):
    order = await carts.place_order({"a": 2}, hold_for=10)
    post = carts._dispatcher.post

    def post_and_let_the_deadline_pass(sku: str, command: Any, *args: Any, **kw: Any) -> None:
        if type(command) is Take and command.order_id == order.id:
            autojump_clock.jump(20)
        post(sku, command, *args, **kw)

    monkeypatch.setattr(carts._dispatcher, "post", post_and_let_the_deadline_pass)
    with pytest.raises(OutOfStock):
        await carts.change_order(order.id, {"a": 2, "b": 11})
    after = await carts.get_order(order.id)
    assert after.status == "expired" and after.lines == {"a": 2}
    assert await levels(carts) == {s: StockLevel(s, 10, 0, 10) for s in "abc"}


async def test_bad_edits_are_refused_and_change_nothing(carts, store, autojump_clock):
    order = await carts.place_order({"a": 2, "b": 1}, hold_for=60, idempotency_key="placed")
    await carts.change_order(order.id, {"a": 3, "b": 1}, idempotency_key="edit-1")
    confirmed = await carts.place_order({"a": 1}, hold_for=60)
    await carts.confirm(confirmed.id)
    cancelled = await carts.place_order({"a": 1}, hold_for=60)
    await carts.cancel(cancelled.id)
    expired = await carts.place_order({"a": 1}, hold_for=1)
    await trio.sleep(2)
    direct = await carts.place_order({"a": 1})
    before = await frozen(carts, store, order.id)
    cases: list[tuple[Any, Any, dict[str, Any], type[Exception]]] = [
        ("missing", {"a": 1}, {}, OrderNotFound),
        (None, {"a": 1}, {}, OrderNotFound),
        (confirmed.id, {"a": 2}, {}, InvalidTransition),
        (cancelled.id, {"a": 2}, {}, InvalidTransition),
        (expired.id, {"a": 2}, {}, InvalidTransition),
        (direct.id, {"a": 2}, {}, InvalidTransition),
        (order.id, {}, {}, InvalidRequest),
        (order.id, [], {}, InvalidRequest),
        (order.id, {"a": 0}, {}, InvalidRequest),
        (order.id, {"a": 0, "b": 1}, {}, InvalidRequest),
        (order.id, {"a": -1}, {}, InvalidRequest),
        (order.id, [("a", 1), ("a", 2)], {}, InvalidRequest),
        (order.id, {"nope": 1}, {}, UnknownProduct),
        (order.id, {"a": 1, "nope": 1}, {}, UnknownProduct),
        (order.id, {"bad sku": 1}, {}, InvalidRequest),
        (order.id, "a", {}, InvalidRequest),
        (order.id, {"a": 1}, {"idempotency_key": "edit-1"}, IdempotencyConflict),
        (order.id, {"a": 3, "b": 1}, {"idempotency_key": "placed"}, IdempotencyConflict),
        (confirmed.id, {"a": 3, "b": 1}, {"idempotency_key": "edit-1"}, IdempotencyConflict),
        (order.id, {"a": 1}, {"idempotency_key": "has space"}, InvalidRequest),
    ]
    for order_id, lines, kwargs, error in cases:
        with pytest.raises(error):
            await carts.change_order(order_id, lines, **kwargs)
        assert await frozen(carts, store, order.id) == before, (order_id, lines, kwargs)
    for done in (confirmed, cancelled, expired, direct):
        assert (await carts.get_order(done.id)).lines == {"a": 1}


async def test_a_retried_edit_applies_once(carts, store, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=60)
    first = await carts.change_order(order.id, {"a": 4}, idempotency_key="edit")
    again = await carts.change_order(order.id, {"a": 4}, idempotency_key="edit")
    assert again == first and (await carts.stock("a")).reserved == 4
    assert carts.statistics().changed == 1 and carts.statistics().replayed == 1
    # the cart moves on; a late retry of the old edit does not undo that
    moved_on = await carts.change_order(order.id, {"a": 2, "b": 1})
    assert await carts.change_order(order.id, {"a": 4}, idempotency_key="edit") == moved_on
    assert (await carts.stock("a")).reserved == 2
    assert store.state.keys["edit"].kind == "change"


async def test_a_retried_placement_still_matches_after_the_cart_changed(carts, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=60, idempotency_key="cart")
    changed = await carts.change_order(order.id, {"a": 3, "b": 1})
    assert await carts.place_order({"a": 1}, hold_for=60, idempotency_key="cart") == changed
    with pytest.raises(IdempotencyConflict):
        await carts.place_order({"a": 3, "b": 1}, hold_for=60, idempotency_key="cart")
    assert (await carts.stock("a")).reserved == 3


async def test_concurrent_retries_of_one_edit_apply_once(carts, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=60)
    results = []

    async def retry() -> None:
        results.append(await carts.change_order(order.id, {"a": 3, "b": 2}, idempotency_key="e"))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(retry)
    assert len(results) == 20 and all(r.lines == {"a": 3, "b": 2} for r in results)
    assert carts.statistics().changed == 1
    assert (await carts.stock("a")).reserved == 3 and (await carts.stock("b")).reserved == 2


# -- extend -----------------------------------------------------------------------------------


async def test_an_extended_hold_lapses_at_its_new_deadline(carts, store, autojump_clock):
    order = await carts.place_order({"a": 2}, hold_for=60)
    await trio.sleep(50)
    extended = await carts.extend(order.id, timedelta(minutes=2))
    assert extended.expires_at == from_timestamp(now() + 120)
    assert store.state.orders[order.id].expires_at == extended.expires_at
    await trio.sleep(20)  # past the old deadline
    assert (await carts.get_order(order.id)).status == "reserved"
    assert (await carts.stock("a")).reserved == 2
    await trio.sleep(99.999)
    assert (await carts.get_order(order.id)).status == "reserved"
    await trio.sleep(0.002)
    assert (await carts.stock("a")).reserved == 0  # the timer released it at the new deadline
    assert (await carts.get_order(order.id)).status == "expired"
    assert carts.statistics().extended == 1


async def test_a_shorter_extension_keeps_the_later_deadline(carts, store, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=600)
    seq = store.state.last_seq
    assert await carts.extend(order.id, 10) == order
    assert store.state.last_seq == seq
    assert carts.statistics().extended == 0


async def test_extensions_are_capped_at_the_maximum_hold_lifetime(carts, autojump_clock):
    order = await carts.place_order({"a": 2}, hold_for=3000)
    cap = order.created_at.timestamp() + 3600
    await trio.sleep(2000)
    capped = await carts.extend(order.id, timedelta(hours=2))
    assert capped.expires_at == from_timestamp(cap)  # the deadline actually granted
    with pytest.raises(InvalidTransition, match="maximum lifetime") as caught:
        await carts.extend(order.id, 60)
    assert caught.value.why is not None
    assert carts.statistics().extend_refused == 1
    await trio.sleep(cap - now() - 0.001)
    assert (await carts.get_order(order.id)).status == "reserved"
    await trio.sleep(0.002)
    assert (await carts.get_order(order.id)).status == "expired"
    assert (await carts.stock("a")).reserved == 0


async def test_bad_extensions_are_refused_and_change_nothing(carts, store, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=60)
    await carts.extend(order.id, 120, idempotency_key="ext")
    confirmed = await carts.place_order({"a": 1}, hold_for=60)
    await carts.confirm(confirmed.id)
    cancelled = await carts.place_order({"a": 1}, hold_for=60)
    await carts.cancel(cancelled.id)
    direct = await carts.place_order({"a": 1})
    before = await frozen(carts, store, order.id)
    cases: list[tuple[Any, Any, dict[str, Any], type[Exception]]] = [
        ("missing", 60, {}, OrderNotFound),
        (5, 60, {}, OrderNotFound),
        (confirmed.id, 60, {}, InvalidTransition),
        (cancelled.id, 60, {}, InvalidTransition),
        (direct.id, 60, {}, InvalidTransition),
        (order.id, 0, {}, InvalidRequest),
        (order.id, -1, {}, InvalidRequest),
        (order.id, None, {}, InvalidRequest),
        (order.id, "60", {}, InvalidRequest),
        (order.id, float("nan"), {}, InvalidRequest),
        (order.id, timedelta(days=2), {}, InvalidRequest),
        (order.id, 300, {"idempotency_key": "ext"}, IdempotencyConflict),
        (order.id, 300, {"idempotency_key": ""}, InvalidRequest),
    ]
    for order_id, hold, kwargs, error in cases:
        with pytest.raises(error):
            await carts.extend(order_id, hold, **kwargs)
        assert await frozen(carts, store, order.id) == before, (order_id, hold, kwargs)
    await trio.sleep(200)
    with pytest.raises(InvalidTransition):  # expired
        await carts.extend(order.id, 60)


async def test_a_retried_extension_applies_once(carts, store, autojump_clock):
    order = await carts.place_order({"a": 1}, hold_for=60)
    first = await carts.extend(order.id, 300, idempotency_key="ext")
    await trio.sleep(100)
    again = await carts.extend(order.id, 300, idempotency_key="ext")
    assert again == first  # not pushed to now + 300
    assert carts.statistics().extended == 1
    assert store.state.keys["ext"].fingerprint == 300.0


@pytest.mark.parametrize("call", ["change", "extend"])
async def test_a_keyed_cart_call_answers_once_its_key_is_durable(call, autojump_clock):
    """In durable mode a call answers once its change is committed, and the key use is part of
    the change: were it lost in a crash, a retry would apply again. Here the call changes
    nothing else (the same lines; a deadline already later), so the key is all there is."""
    async with stalled_hold() as (engine, store, order):
        answered = trio.Event()

        async def keyed() -> None:
            if call == "change":
                await engine.change_order(order.id, {"a": 1}, idempotency_key="k")
            else:
                await engine.extend(order.id, 10, idempotency_key="k")
            answered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keyed)
            await trio.testing.wait_all_tasks_blocked()
            assert not answered.is_set()  # the key use is not committed yet
            assert "k" not in store.state.keys
            store.resume()
        assert store.state.keys["k"].kind == call
