"""Hundreds of concurrent tasks place, confirm, cancel and abandon orders on the real engine;
afterwards the books must balance, in the engine and in what the journal committed."""

import random

import pytest
import trio

import stockade
from stockade import InvalidTransition, MemoryStore, OutOfStock
from tests.books import assert_books_balance, assert_store_matches

SKUS = [f"sku-{i}" for i in range(8)]


@pytest.mark.parametrize("seed", range(5))
async def test_random_concurrent_workload_balances(seed, autojump_clock):
    rng = random.Random(seed)
    store = MemoryStore(keep_movements=True)
    initial = {sku: rng.randint(0, 40) for sku in SKUS}
    adjustments = dict.fromkeys(SKUS, 0)
    outcomes = {"placed": 0, "refused": 0, "late": 0}
    async with stockade.open_engine(store=store, durability="durable") as engine:
        for sku, on_hand in initial.items():
            await engine.set_stock(sku, on_hand)

        async def shopper(n):
            for _ in range(rng.randint(1, 6)):
                lines = {s: rng.randint(1, 4) for s in rng.sample(SKUS, rng.randint(1, 3))}
                hold = rng.choice([None, 1.0, 5.0, 20.0])
                try:
                    order = await engine.place_order(lines, hold_for=hold)
                except OutOfStock:
                    outcomes["refused"] += 1
                    continue
                outcomes["placed"] += 1
                await trio.sleep(rng.random() * 10)
                action = rng.choice(["confirm", "cancel", "abandon", "confirm_then_return"])
                try:
                    if action in ("confirm", "confirm_then_return"):
                        await engine.confirm(order.id)
                    if action in ("cancel", "confirm_then_return"):
                        await engine.cancel(order.id)
                except InvalidTransition:
                    outcomes["late"] += 1  # the hold lapsed first

        async def merchant():
            for _ in range(30):
                sku = rng.choice(SKUS)
                await trio.sleep(rng.random())
                delta = rng.randint(1, 5)
                await engine.adjust_stock(sku, delta, reason="restock")
                adjustments[sku] += delta

        async with trio.open_nursery() as nursery:
            nursery.start_soon(merchant)
            for n in range(300):
                nursery.start_soon(shopper, n)
        await trio.sleep(30)  # every remaining hold lapses
        levels = {sku: await engine.stock(sku) for sku in SKUS}
        orders = list(engine._book.orders.values())
    assert outcomes["placed"] > 50 and outcomes["refused"] > 0
    assert all(level.reserved == 0 for level in levels.values())
    assert_books_balance(levels, orders, initial, adjustments)
    assert_store_matches(store.state, levels, orders)
