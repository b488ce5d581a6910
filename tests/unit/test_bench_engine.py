"""bench/engine.py's order-keeping baseline must keep orders the way the engine does: the same
validation, the same Order and OrderPlaced, ids from the same scheme, all or nothing, bounded,
and nothing left behind by a refused or cancelled call. No timing is asserted."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

import stockade
from bench.engine import OrderKeeper, keeping_run
from bench.engine import main as engine_bench
from stockade.engine.changes import OrderPlaced

HEX_ID = re.compile(r"[0-9a-f]{32}")


async def test_a_kept_order_is_the_engines_order_and_event(nursery):
    keeper = OrderKeeper({"a": 3, "b": 1})
    await nursery.start(keeper.journal.run)
    kept = await keeper.place_order([("b", 1), ("a", 2)])
    assert keeper.journal._buffer == [OrderPlaced(kept, keeper.clock.now())]  # not yet drained
    await trio.testing.wait_all_tasks_blocked()
    assert keeper.journal.drained == 1 and keeper.journal._buffer == []
    assert keeper.stock == {"a": 1, "b": 0} and keeper.placed == 1
    assert keeper.book.get(kept.id) is kept
    assert HEX_ID.fullmatch(kept.id)
    assert kept.created_at.tzinfo is UTC
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 3)
        await engine.set_stock("b", 1)
        placed = await engine.place_order([("b", 1), ("a", 2)])
    same = msgspec.structs.replace(kept, id=placed.id, created_at=placed.created_at)
    assert same == placed  # status, lines in sku order, no expiry, no key
    assert list(kept.lines) == ["a", "b"]


async def test_ids_are_distinct_across_pool_refills(nursery):
    keeper = OrderKeeper({"a": 2500})
    await nursery.start(keeper.journal.run)
    ids = [(await keeper.place_order({"a": 1})).id for _ in range(2500)]
    assert len(set(ids)) == 2500
    assert all(HEX_ID.fullmatch(order_id) for order_id in ids)


BAD_INPUT: list[tuple[Any, dict[str, Any]]] = [
    ({}, {}),
    ({"a": 0}, {}),
    ({"a": True}, {}),
    ([("a", 1), ("a", 1)], {}),
    ({"bad sku!": 1}, {}),
    ({"nope": 1}, {}),
    ("a", {}),
    ({"a": 1}, {"hold_for": -1}),
    ({"a": 1}, {"idempotency_key": "has space"}),
]


@pytest.mark.parametrize(("lines", "options"), BAD_INPUT)
async def test_bad_input_is_refused_as_the_engine_refuses_it(nursery, lines, options):
    keeper = OrderKeeper({"a": 5})
    await nursery.start(keeper.journal.run)
    with pytest.raises(stockade.StockadeError) as refused:
        await keeper.place_order(lines, **options)
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 5)
        with pytest.raises(stockade.StockadeError) as by_engine:
            await engine.place_order(lines, **options)
    assert type(refused.value) is type(by_engine.value)
    assert str(refused.value) == str(by_engine.value)
    assert keeper.stock == {"a": 5} and keeper.book.orders == {} and keeper.placed == 0


@pytest.mark.parametrize("options", [{"hold_for": 60}, {"idempotency_key": "cart-1"}])
async def test_holds_and_keys_are_refused_not_half_kept(nursery, options):
    keeper = OrderKeeper({"a": 5})
    await nursery.start(keeper.journal.run)
    with pytest.raises(stockade.InvalidRequest, match="direct purchases only"):
        await keeper.place_order({"a": 1}, **options)
    assert keeper.stock == {"a": 5} and keeper.book.orders == {}


async def test_a_short_line_refuses_the_whole_order_with_the_engines_shortages(nursery):
    keeper = OrderKeeper({"a": 5, "b": 1, "c": 0})
    await nursery.start(keeper.journal.run)
    with pytest.raises(stockade.OutOfStock) as refused:
        await keeper.place_order({"a": 2, "b": 2, "c": 1})
    assert refused.value.shortages == {"b": (2, 1), "c": (1, 0)}
    assert keeper.stock == {"a": 5, "b": 1, "c": 0}
    assert keeper.book.orders == {} and keeper.out_of_stock == 1 and keeper.in_flight == 0
    await trio.testing.wait_all_tasks_blocked()
    assert keeper.journal.drained == 0


async def test_a_full_journal_is_overloaded_and_changes_nothing():
    keeper = OrderKeeper({"a": 5}, max_buffered=2)  # no consumer: nothing is drained
    await keeper.place_order({"a": 1})
    await keeper.place_order({"a": 1})
    with pytest.raises(stockade.Overloaded):
        await keeper.place_order({"a": 1})
    assert keeper.stock == {"a": 3} and len(keeper.book.orders) == 2


async def test_a_cancelled_call_leaves_nothing_behind(nursery):
    keeper = OrderKeeper({"a": 5})
    await nursery.start(keeper.journal.run)
    with trio.CancelScope() as scope:
        scope.cancel()
        await keeper.place_order({"a": 1})
    assert scope.cancelled_caught
    assert keeper.stock == {"a": 5} and keeper.book.orders == {} and keeper.in_flight == 0


async def test_a_closed_baseline_refuses_new_calls_and_changes_nothing(nursery):
    keeper = OrderKeeper({"a": 5})
    await nursery.start(keeper.journal.run)
    await keeper.place_order({"a": 1})
    keeper.close()
    with pytest.raises(stockade.EngineClosed):
        await keeper.place_order({"a": 1})
    assert keeper.stock == {"a": 4} and len(keeper.book.orders) == 1 and keeper.in_flight == 0


async def test_orders_of_one_pass_share_its_time_and_a_drain_starts_the_next(
    nursery, autojump_clock
):
    keeper = OrderKeeper({"a": 5})
    await nursery.start(keeper.journal.run)
    async with trio.open_nursery() as buyers:  # two callers in one pass
        for _ in range(2):
            buyers.start_soon(keeper.place_order, {"a": 1})
    first, second = keeper.book.orders.values()
    assert first.created_at is second.created_at
    await trio.sleep(5)  # the journal drains (a new pass), then time passes
    third = await keeper.place_order({"a": 1})
    assert (third.created_at - first.created_at).total_seconds() == pytest.approx(5, abs=0.01)


@pytest.mark.parametrize("products", [1, 100])
async def test_the_baseline_run_sells_out_and_verifies(products):
    assert await keeping_run(2000, 100, products) > 0  # raises VerificationFailed otherwise


async def test_the_bench_prints_both_ratios_and_the_target(capsys):
    await engine_bench(units=2000, tasks=100, rounds=1)
    out = capsys.readouterr().out
    assert "target: engine / order-keeping baseline >= 0.8" in out
    rows = {line[:26].strip(): line for line in out.splitlines()[3:]}
    assert set(rows) == {"hot product", "100 products", "round trip only (diag.)"}
    for label in ("hot product", "100 products"):
        assert re.search(r"\d\.\d\d  (met|NOT met)\s+[\d,]+\s+\d\.\d\d  yes$", rows[label])
    assert re.search(r"-\s+-  -\s+[\d,]+\s+\d\.\d\d  yes$", rows["round trip only (diag.)"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"units": 2000, "tasks": 20, "rounds": 1}, "--tasks must be at least 100"),
        ({"units": 50, "tasks": 100, "rounds": 1}, "--units must be at least --tasks"),
        ({"units": 2000, "tasks": 100, "rounds": 0}, "--rounds must be at least 1"),
    ],
)
async def test_options_that_cannot_sell_every_unit_stop_before_anything_runs(
    capsys, options, message
):
    with pytest.raises(SystemExit, match=re.escape(message)):
        await engine_bench(**options)
    assert capsys.readouterr().out == ""
