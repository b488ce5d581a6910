"""Many anonymous clients (holders) place, cancel, confirm and abandon holds concurrently on the
real engine, on the mock clock: at every step no holder has more open holds than its bound, and
the engine's count covers the reserved orders placed for it, and once settled equals them."""

import random

import pytest
import trio

import stockade
from stockade import InvalidTransition, MemoryStore, OutOfStock, TooManyHolds

HOLDERS = [f"198.51.100.{i}" for i in range(6)]
LIMIT = 3


@pytest.mark.parametrize("seed", range(5))
async def test_no_holder_ever_passes_its_bound_and_the_count_matches_the_orders(
    seed, autojump_clock
):
    rng = random.Random(seed)
    async with stockade.open_engine(store=MemoryStore(), durability="durable") as engine:
        await engine.set_stock("a", rng.randint(5, 60))
        mine: dict[str, set[str]] = {h: set() for h in HOLDERS}  # every order placed per holder
        outcomes = {"placed": 0, "too_many": 0, "short": 0}

        def check(settled: bool = False) -> None:
            """Synchronous: one instant of the engine. Mid-run a hold may be counted before
            its caller has its id (placed, not yet answered), or a claim be in progress;
            settled, the count is exactly the caller's reserved orders."""
            book = engine._book
            for holder in HOLDERS:
                reserved = [oid for oid in mine[holder] if book.orders[oid].status == "reserved"]
                counted = book.holders.count(holder)
                assert len(reserved) <= counted <= LIMIT, (holder, counted, reserved)
                assert not settled or counted == len(reserved), (holder, counted, reserved)

        async def client(holder: str) -> None:
            for _ in range(rng.randint(1, 8)):
                try:
                    order = await engine.place_order(
                        {"a": rng.randint(1, 3)}, hold_for=rng.choice([1.0, 5.0, 20.0]),
                        holder=holder, max_open_holds=LIMIT,
                    )  # fmt: skip
                except TooManyHolds:
                    outcomes["too_many"] += 1
                    await trio.sleep(rng.random() * 3)
                    continue
                except OutOfStock:
                    outcomes["short"] += 1
                    continue
                mine[holder].add(order.id)
                outcomes["placed"] += 1
                await trio.sleep(rng.random() * 4)
                action = rng.choice(["confirm", "cancel", "abandon"])
                try:
                    if action == "confirm":
                        await engine.confirm(order.id)
                    elif action == "cancel":
                        await engine.cancel(order.id)
                except InvalidTransition:
                    pass  # it lapsed first

        async def watcher() -> None:
            for _ in range(60):
                await trio.sleep(0.5)
                check()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            for n in range(60):
                nursery.start_soon(client, HOLDERS[n % len(HOLDERS)])
        check(settled=True)
        await trio.sleep(30)  # every hold lapses
        check(settled=True)
        assert len(engine._book.holders) == 0  # nothing kept for idle holders
    assert outcomes["placed"] > 0 and outcomes["too_many"] > 0, outcomes
