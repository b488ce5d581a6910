"""Open holds per holder (anonymous holds per client address): counted in the engine, freed by
cancel, expiry and confirm, never passed by a rush, bounded in memory."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import stockade
from stockade import InvalidRequest, OutOfStock, Overloaded, TooManyHolds
from stockade.engine.holders import Holders

ADDRESS = "203.0.113.7"


def open_holds(engine: stockade.Engine, holder: str = ADDRESS) -> int:
    return engine._book.holders.count(holder)


async def hold(
    engine: stockade.Engine, qty: int = 1, idempotency_key: str | None = None
) -> stockade.Order:
    return await engine.place_order(
        {"a": qty}, hold_for=60, holder=ADDRESS, max_open_holds=2, idempotency_key=idempotency_key
    )


async def test_a_cancel_an_expiry_and_a_confirm_each_free_a_place(engine, autojump_clock):
    await engine.set_stock("a", 100)
    first, second = await hold(engine), await hold(engine)
    with pytest.raises(TooManyHolds) as refused:
        await hold(engine)
    assert refused.value.limit == 2 and 59 <= refused.value.retry_after_s <= 60
    assert (await engine.stock("a")).reserved == 2  # the refused hold took nothing
    await engine.cancel(first.id)
    third = await hold(engine)
    assert open_holds(engine) == 2
    await engine.confirm(second.id)
    fourth = await engine.place_order({"a": 1}, hold_for=5, holder=ADDRESS, max_open_holds=2)
    with pytest.raises(TooManyHolds) as refused:
        await hold(engine)
    assert 4 <= refused.value.retry_after_s <= 5  # the earliest lapse: fourth's
    await trio.sleep(5)
    assert (await engine.get_order(fourth.id)).status == "expired"
    assert open_holds(engine) == 1
    await hold(engine)
    await engine.cancel(third.id)
    assert open_holds(engine) == 1


async def test_other_holders_purchases_and_keyed_holds_are_not_counted(engine):
    await engine.set_stock("a", 100)
    await hold(engine)
    await hold(engine)
    await engine.place_order({"a": 1}, hold_for=60, holder="198.51.100.1", max_open_holds=2)
    await engine.place_order({"a": 1}, holder=ADDRESS, max_open_holds=2)  # a sale: not a hold
    await engine.place_order({"a": 1}, hold_for=60)  # no holder (a keyed caller)
    assert open_holds(engine) == 2 and open_holds(engine, "198.51.100.1") == 1
    assert len(engine._book.holders) == 2


async def test_a_refused_order_gives_its_place_back_and_a_replay_takes_none(engine):
    await engine.set_stock("a", 3)
    with pytest.raises(OutOfStock):
        await hold(engine, qty=4)
    assert open_holds(engine) == 0 and len(engine._book.holders) == 0
    kept = await hold(engine, idempotency_key="k1")
    again = await hold(engine, idempotency_key="k1")  # the same order, no second place
    assert again.id == kept.id and open_holds(engine) == 1
    await hold(engine)
    with pytest.raises(TooManyHolds):
        await hold(engine, idempotency_key="k2")
    assert (await hold(engine, idempotency_key="k1")).id == kept.id  # a replay still answers


async def test_a_rush_of_one_holder_never_passes_the_bound(engine):
    await engine.set_stock("a", 1000)
    placed: list[stockade.Order] = []
    refused = 0

    async def one() -> None:
        nonlocal refused
        try:
            placed.append(
                await engine.place_order({"a": 1}, hold_for=60, holder=ADDRESS, max_open_holds=5)
            )
        except TooManyHolds:
            refused += 1

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(one)
    assert len(placed) == 5 and refused == 195
    assert (await engine.stock("a")).reserved == 5 and open_holds(engine) == 5


async def test_the_holder_and_the_bound_are_checked():
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 5)
        for holder, limit in (("", 2), ("x" * 129, 2), (7, 2), (ADDRESS, 0), (ADDRESS, "2")):
            with pytest.raises(InvalidRequest):
                await engine.place_order({"a": 1}, hold_for=60, holder=holder, max_open_holds=limit)  # type: ignore[arg-type]
        assert (await engine.stock("a")).reserved == 0
        unbounded = [
            await engine.place_order({"a": 1}, hold_for=60, holder=ADDRESS) for _ in range(5)
        ]
        assert len(unbounded) == 5 and open_holds(engine) == 5  # counted, never refused


def test_the_table_keeps_only_holders_with_open_holds_and_is_bounded():
    holders = Holders(max_holders=2)
    never = lambda ids: 1.0  # noqa: E731
    holders.claim("a", 5, never)
    holders.placed("a", "o1")
    holders.claim("b", 5, never)
    with pytest.raises(Overloaded):
        holders.claim("c", 5, never)
    holders.unclaim("b")  # refused: gone, not idle
    holders.claim("c", 5, never)
    holders.placed("c", "o2")
    holders.finished("o1")
    holders.finished("o1")  # a second move of the same order changes nothing
    holders.finished("o-unknown")
    assert len(holders) == 1 and holders.count("a") == 0 and holders.orders_of("c") == {"o2"}
    holders.finished("o2")
    assert len(holders) == 0


async def test_the_holder_bound_and_update_location_travel_over_the_engine_protocol(engine):
    """Fronts call the engine process: the bound must be counted there, whichever front asks."""
    from tests.unit.test_protocol_link import linked

    await engine.set_stock("a", 10)
    async with linked(engine) as first, linked(engine) as second:  # two fronts, one engine
        await first.place_order({"a": 1}, hold_for=60, holder=ADDRESS, max_open_holds=2)
        await second.place_order({"a": 1}, hold_for=60, holder=ADDRESS, max_open_holds=2)
        with pytest.raises(TooManyHolds) as refused:
            await first.place_order({"a": 1}, hold_for=60, holder=ADDRESS, max_open_holds=2)
        assert refused.value.limit == 2 and 0 < refused.value.retry_after_s <= 60
        moved = await second.update_location("default", priority=4)
        assert moved == stockade.Location("default", "", 4, True)
    assert open_holds(engine) == 2
