"""The webhooks table in every store: what the owner writes is what a restart reads."""

from __future__ import annotations

import msgspec
import pytest

from stockade._open import open_engine_and_store
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
