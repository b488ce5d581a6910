"""statistics(): a frozen, typed snapshot, and what /metrics and /readyz make of it."""

from __future__ import annotations

import msgspec
import pytest
import trio.testing

import stockade
from stockade import EngineStatistics, JournalStatistics, MemoryStore, OutOfStock, StoreUnavailable
from stockade.api.app import ApiSettings, create_app
from stockade.engine.feed import EventRow
from stockade.persistence.journal import Batch


class UnreachableStore(MemoryStore):
    """A database that is down for good: every commit raises StoreUnavailable."""

    async def commit(self, batch: Batch) -> list[EventRow]:
        await trio.lowlevel.checkpoint()
        raise StoreUnavailable("connection refused")


async def test_statistics_are_a_frozen_typed_snapshot(engine):
    await engine.set_stock("a", 3)
    held = await engine.place_order({"a": 1}, hold_for=60, idempotency_key="k")
    await engine.place_order({"a": 1}, hold_for=60, idempotency_key="k")  # replayed
    sold = await engine.place_order({"a": 1})
    with pytest.raises(OutOfStock):
        await engine.place_order({"a": 5})
    await engine.confirm(held.id)
    await engine.cancel(sold.id)
    stats = engine.statistics()
    assert type(stats) is EngineStatistics and type(stats.journal) is JournalStatistics
    expected = {"placed": 2, "out_of_stock": 1, "confirmed": 1, "cancelled": 1, "expired": 0,
                "replayed": 1, "products": 1, "orders": 2, "scheduled_expiries": 1}  # fmt: skip
    assert {name: getattr(stats, name) for name in expected} == expected
    assert stats.journal.healthy is True and stats.journal.buffered == 0
    assert stats.journal.events_committed == 5 and stats.journal.store_errors == 0
    assert stats.active_actors == 0 and stats.queued_messages == 0 and stats.passes > 0
    with pytest.raises(AttributeError):
        stats.placed = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        stats.journal.healthy = False  # type: ignore[misc]
    assert engine.statistics().placed == 2  # a snapshot: later calls make new ones
    for field in msgspec.structs.fields(EngineStatistics):
        assert field.type in (int, JournalStatistics), field


async def test_metrics_keep_every_statistic_under_its_name(engine):
    app = create_app(engine, ApiSettings(admin_token="t", log_requests=False))
    async with app.test_app() as test_app:
        text = await (await test_app.test_client().get("/metrics")).get_data(as_text=True)
    exported = {line.split()[0] for line in text.splitlines() if line.startswith("stockade_")}
    assert exported >= {
        "stockade_orders_placed_total",
        "stockade_orders_out_of_stock_total",
        "stockade_orders_replayed_total",
        "stockade_holds_confirmed_total",
        "stockade_orders_cancelled_total",
        "stockade_holds_expired_total",
        "stockade_products",
        "stockade_holds_scheduled",
        "stockade_active_actors",
        "stockade_mailbox_depth",
        "stockade_journal_queue_depth",
        "stockade_journal_batches_total",
        "stockade_journal_batch_size",
        "stockade_journal_commit_ms_total",
        "stockade_store_errors_total",
        "stockade_journal_healthy",
    }


async def test_an_unreachable_store_is_unhealthy_and_not_ready(autojump_clock):
    store = UnreachableStore()
    async with stockade.open_engine(store=store, durability="fast", shutdown_grace=1) as engine:
        await engine.set_stock("a", 1)  # fast: answered; the commit then fails
        await trio.testing.wait_all_tasks_blocked()
        journal = engine.statistics().journal
        assert journal.healthy is False and journal.store_errors >= 1 and journal.buffered == 1
        app = create_app(engine, ApiSettings(admin_token="t", log_requests=False))
        async with app.test_app() as test_app:
            client = test_app.test_client()
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert await ready.get_json() == {"ready": False, "journal_buffered": 1}
            metrics = await (await client.get("/metrics")).get_data(as_text=True)
            assert "stockade_journal_healthy 0.0" in metrics
