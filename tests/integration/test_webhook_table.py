"""The webhooks table in every store: what the owner writes is what a restart reads."""

from __future__ import annotations

import msgspec
import pytest

from stockade._open import open_engine_and_store
from stockade.persistence.sinks import SinkRecord, SinkStore
from stockade.persistence.subscriptions import Progress as WebhookProgress
from stockade.persistence.webhooks import WebhookRecord, WebhookStore
from tests.integration.stores import StoreKind, memory_kind, postgres_kind, sqlite_kind


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def kind(request, tmp_path) -> StoreKind:
    if request.param == "postgresql":
        return postgres_kind(request.getfixturevalue("postgres_dsn"))
    return {"memory": memory_kind, "sqlite": lambda: sqlite_kind(tmp_path)}[request.param]()


SECRET = "whsec_" + "A" * 32


async def test_subscriptions_and_their_progress_survive_a_restart(kind):
    one = WebhookRecord("one", "http://127.0.0.1:9/a", None, SECRET, 0, 100.0, 100.0)
    two = WebhookRecord("two", "https://shop.example/h?x=1", ("order.placed", "stock.changed"),
                        SECRET, 7, 200.0, 200.0)  # fmt: skip
    async with open_engine_and_store(store=kind.make()) as (_, store):
        assert isinstance(store, WebhookStore)
        table = store.webhook_table()
        assert await table.all() == []
        await table.put(two)
        await table.put(one)
        assert await table.all() == [one, two]  # in id order
        replaced = msgspec.structs.replace(one, url="http://127.0.0.1:9/b", created_at=999.0,
                                           updated_at=300.0)  # fmt: skip
        await table.put(replaced)
        await table.save_progress([
            WebhookProgress("two", 12, True, "answered 500", 310.0),
            WebhookProgress("gone", 5, False, None, None),  # deleted meanwhile: skipped
        ])  # fmt: skip
        assert await table.delete("nope") is False
    expected_one = msgspec.structs.replace(replaced, created_at=100.0)  # the first kept
    expected_two = msgspec.structs.replace(
        two, delivered_seq=12, failing=True, last_error="answered 500", last_error_at=310.0
    )
    async with open_engine_and_store(store=kind.make()) as (_, store):
        assert isinstance(store, WebhookStore)
        table = store.webhook_table()
        assert await table.all() == [expected_one, expected_two]
        assert await table.delete("one") is True
        await table.save_progress([WebhookProgress("one", 50, False, None, None)])
        assert await table.all() == [expected_two]  # progress never brings a row back


async def test_sinks_and_webhook_batches_survive_a_restart(kind):
    sink = SinkRecord("s", "nats://127.0.0.1:4222/a.b", ("order.placed",), 3, 100.0, 100.0)
    hook = WebhookRecord("h", "http://127.0.0.1:9/a", None, SECRET, 0, 100.0, 100.0, batch=250)
    async with open_engine_and_store(store=kind.make()) as (_, store):
        assert isinstance(store, SinkStore) and isinstance(store, WebhookStore)
        await store.sink_table().put(sink)
        await store.webhook_table().put(hook)
        await store.sink_table().save_progress([WebhookProgress("s", 9, True, "down", 120.0)])
    async with open_engine_and_store(store=kind.make()) as (_, store):
        assert isinstance(store, SinkStore) and isinstance(store, WebhookStore)
        expected = msgspec.structs.replace(sink, delivered_seq=9, failing=True,
                                           last_error="down", last_error_at=120.0)  # fmt: skip
        assert await store.sink_table().all() == [expected]
        assert await store.webhook_table().all() == [hook]
        assert await store.sink_table().delete("s") is True
        assert await store.sink_table().all() == []
