"""``/v1/sinks`` and webhook batches through the Quart test client, over a memory store: what
a sink URL may say (422 with the reason otherwise, nothing stored), what GET shows (never a
password), replace and delete. Nothing is published here (the app's Outbound does not run):
tests/integration/test_sinks.py publishes to real brokers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import stockade
from stockade import MemoryStore
from stockade.api.app import ApiSettings, create_app

TOKEN = "sink-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NATS = "nats://127.0.0.1:4222/shop.events"
AMQP = "amqp://shop:pa%24%24word@127.0.0.1:5672/%2F?exchange=shop"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store) -> AsyncIterator[Any]:
    async with stockade.open_engine(store=store, durability="durable") as engine:
        settings = ApiSettings(admin_token=TOKEN, log_requests=False)
        app = create_app(engine, settings, webhook_table=store.webhook_table(),
                         sink_table=store.sink_table())  # fmt: skip
        async with app.test_app() as test_app:
            yield test_app.test_client()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/x", "unknown scheme 'http'"),
        ("kafka://127.0.0.1:9092/t", "unknown scheme 'kafka'"),
        ("127.0.0.1:4222", "not a URL"),
        ("nats://127.0.0.1:4222", "needs a subject"),
        ("nats://127.0.0.1:4222/", "needs a subject"),
        ("nats://127.0.0.1:4222/orders.*", "dot-separated tokens"),
        ("nats://127.0.0.1:4222/a?stream=x", "takes no query"),
        ("redis://127.0.0.1:6379/0", "needs a stream"),
        ("redis://127.0.0.1:6379/0?stream=", "needs a stream"),
        ("redis://127.0.0.1:6379/zero?stream=s", "database is a number"),
        ("redis://127.0.0.1:6379/0?stream=s&key=t", "unknown query parameter 'key'"),
        ("redis://127.0.0.1:6379/0?stream=s&stream=t", "given twice"),
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "needs an exchange"),
        ("amqp://guest:guest@127.0.0.1:5672/%2F?exchange=amq.topic", "not amq."),
        ("amqp://guest:guest@127.0.0.1:5672/a/b?exchange=x", "one path segment"),
        ("nats://127.0.0.1:99999/a", "malformed"),
        ("nats://127.0.0.1:0/a", "port 0"),
        ("nats://-bad-/a", "host name or an IPv4"),
        ("nats://300.1.1.1/a", "host name or an IPv4"),
        ("nats://127.0.0.1/a#frag", "no fragment"),
        ("nats://127.0.0.1/a b", "no spaces"),
        ("", "non-empty"),
    ],
)
async def test_a_bad_url_is_refused_with_its_reason_and_nothing_is_kept(client, store, url, reason):
    response = await client.put("/v1/sinks/s", json={"url": url}, headers=ADMIN)
    assert response.status_code == 422, await response.get_data()
    body = await response.get_json()
    assert body["type"] == "/problems/invalid-request"
    assert reason in body["detail"]
    assert store.sinks.records == {}


async def test_a_password_is_masked_in_every_answer_and_kept_in_the_store(client, store):
    made = await client.put("/v1/sinks/rabbit", json={"url": AMQP}, headers=ADMIN)
    assert made.status_code == 201
    masked = "amqp://shop:***@127.0.0.1:5672/%2F?exchange=shop"
    assert (await made.get_json())["url"] == masked
    for path in ("/v1/sinks/rabbit", "/v1/sinks"):
        answer = await client.get(path, headers=ADMIN)
        assert b"word" not in await answer.get_data()
    assert store.sinks.records["rabbit"].url == AMQP  # publishing needs it


async def test_sinks_are_created_replaced_listed_and_deleted(client, store):
    made = await client.put("/v1/sinks/n", json={"url": NATS, "types": ["order.placed"]},
                            headers=ADMIN)  # fmt: skip
    assert made.status_code == 201
    shown = await made.get_json()
    assert shown["types"] == ["order.placed"] and shown["cursor"] == shown["head"]
    assert not shown["failing"] and shown["last_error"] is None and shown["backlog"] == 0
    other = "redis://127.0.0.1:6379/2?stream=shop:events"
    replaced = await client.put("/v1/sinks/n", json={"url": other}, headers=ADMIN)
    assert replaced.status_code == 200
    assert (await replaced.get_json())["url"] == other
    listed = await (await client.get("/v1/sinks", headers=ADMIN)).get_json()
    assert [s["id"] for s in listed["items"]] == ["n"]
    gone = await client.delete("/v1/sinks/n", headers=ADMIN)
    assert gone.status_code == 200 and store.sinks.records == {}
    missing = await client.get("/v1/sinks/n", headers=ADMIN)
    assert missing.status_code == 404
    assert (await missing.get_json())["type"] == "/problems/sink-not-found"


@pytest.mark.parametrize(
    "body",
    [
        {"url": NATS, "types": []},
        {"url": NATS, "types": ["order.placed", "order.placed"]},
        {"url": NATS, "types": ["order.shipped"]},
        {"url": NATS, "secret": "x"},
        {"types": ["order.placed"]},
    ],
)
async def test_a_bad_body_is_refused(client, store, body):
    response = await client.put("/v1/sinks/s", json=body, headers=ADMIN)
    assert response.status_code == 422, await response.get_data()
    assert store.sinks.records == {}


async def test_a_webhook_takes_a_batch_from_1_to_1000(client, store):
    hook = {"url": "http://127.0.0.1:9/h", "secret": "whsec_" + "Zm9v" * 8}
    for bad in (0, 1001, "10"):
        refused = await client.put("/v1/webhooks/w", json={**hook, "batch": bad}, headers=ADMIN)
        assert refused.status_code == 422
    made = await client.put("/v1/webhooks/w", json={**hook, "batch": 100}, headers=ADMIN)
    assert made.status_code == 201 and (await made.get_json())["batch"] == 100
    assert store.webhooks.records["w"].batch == 100
    plain = await client.put("/v1/webhooks/w", json=hook, headers=ADMIN)
    assert (await plain.get_json())["batch"] == 1  # left out: one event per POST
