"""design.md §11 across restarts: start-up loads open holds and the idempotency window only, the
rest is read back from the database when asked for, and no key is forgotten early."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import stockade
from stockade import IdempotencyConflict, InvalidTransition, StockLevel
from tests.integration.stores import StoreKind, postgres_kind, sqlite_kind

T0 = 1_000_000_000.0
TTL = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request, tmp_path) -> StoreKind:
    if request.param == "postgresql":
        return postgres_kind(request.getfixturevalue("postgres_dsn"))
    return sqlite_kind(tmp_path)


def opened(kind: StoreKind, at: float) -> Any:
    """An engine with a one-minute window whose wall clock reads ``at`` when it starts."""
    return stockade.open_engine(store=kind.make(), wall_clock=lambda: at, idempotency_ttl=TTL)


async def test_keys_are_never_forgotten_early_across_restarts(kind):
    async with opened(kind, T0) as engine:
        await engine.set_stock("a", 10)
        bought = await engine.place_order({"a": 1}, idempotency_key="buy")
        cart = await engine.place_order({"a": 1}, hold_for=600, idempotency_key="cart")
    async with opened(kind, T0 + 50) as engine:
        await engine.change_order(cart.id, {"a": 2}, idempotency_key="edit")
        paid = await engine.confirm(cart.id)
    async with opened(kind, T0 + 59) as engine:  # inside every window
        assert await engine.place_order({"a": 1}, idempotency_key="buy") == bought
        assert await engine.place_order({"a": 1}, hold_for=600, idempotency_key="cart") == paid
        assert (await engine.stock("a")).on_hand == 7
    async with opened(kind, T0 + 100) as engine:  # past the placing keys', inside the edit's
        assert engine.statistics().orders == 1  # the order the edit key names, only
        assert await engine.change_order(cart.id, {"a": 2}, idempotency_key="edit") == paid
        with pytest.raises(IdempotencyConflict):
            await engine.change_order(cart.id, {"a": 3}, idempotency_key="edit")
        again = await engine.place_order({"a": 1}, idempotency_key="buy")  # a new use
        assert again.id != bought.id
        assert (await engine.stock("a")).on_hand == 6
    async with opened(kind, T0 + 111) as engine:  # every window has passed
        assert engine.statistics().orders == 1  # "buy" again, placed at T0 + 100
        with pytest.raises(InvalidTransition):  # no longer a replay: a real (refused) edit
            await engine.change_order(cart.id, {"a": 2}, idempotency_key="edit")


async def test_start_up_loads_open_holds_and_the_window_and_reads_the_rest(kind):
    async with opened(kind, T0) as engine:
        await engine.set_stock("a", 10)
        sold = await engine.place_order({"a": 2})
        cancelled = await engine.cancel((await engine.place_order({"a": 1}, hold_for=60)).id)
        held = await engine.place_order({"a": 3}, hold_for=timedelta(hours=2))
    async with opened(kind, T0 + 3600) as engine:
        assert engine.statistics().orders == 1  # the open hold only
        assert await engine.get_order(sold.id) == sold
        assert await engine.get_order(cancelled.id) == cancelled
        assert await engine.confirm(sold.id) == sold
        with pytest.raises(InvalidTransition):
            await engine.confirm(cancelled.id)
        returned = await engine.cancel(sold.id)  # a late return, read back from the store
        assert returned.status == "cancelled"
        assert await engine.stock("a") == StockLevel("a", 10, 3, 7)
        assert [o.id for o in await engine.list_orders()] == [held.id, cancelled.id, sold.id]
        assert await engine.confirm(held.id) == await engine.get_order(held.id)
    assert kind.read().orders[sold.id] == returned
    async with opened(kind, T0 + 7200) as engine:
        assert engine.statistics().orders == 0
        assert await engine.stock("a") == StockLevel("a", 7, 0, 7)
        assert await engine.cancel(sold.id) == returned  # once only
