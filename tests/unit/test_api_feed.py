"""``/v1/events`` and ``/v1/webhooks`` through the Quart test client, over a memory store that
keeps the feed: pages, refusals, subscriptions and what they show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, get_args

import pytest
import trio

import stockade
from stockade import MemoryStore
from stockade.api.app import ApiSettings, create_app
from stockade.api.schemas import EventType
from stockade.engine.models import EVENT_TYPES

TOKEN = "feed-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "whsec_" + "Zm9v" * 8  # 24 bytes
HOOK = {"url": "http://127.0.0.1:9/hook", "secret": SECRET}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def engine(store) -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(store=store, durability="durable") as engine:
        await engine.set_stock("a", 10)
        yield engine


@pytest.fixture
async def client(engine, store) -> AsyncIterator[Any]:
    app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False),
                     webhook_table=store.webhook_table())  # fmt: skip
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.get_json()
    assert body["type"] == f"/problems/{slug}"
    return body


async def test_pages_of_events_follow_the_feed(client, engine):
    await engine.place_order({"a": 10})  # order.placed, stock.changed, product.sold_out
    first = await (await client.get("/v1/events?limit=2", headers=ADMIN)).get_json()
    assert [e["seq"] for e in first["items"]] == [1, 2] and first["next_after"] == 2
    rest = await client.get(f"/v1/events?after={first['next_after']}", headers=ADMIN)
    body = await rest.get_json()
    assert [e["type"] for e in body["items"]] == [
        "order.placed", "stock.changed", "product.sold_out"
    ]  # fmt: skip
    assert body["items"][0]["data"]["lines"] == {"a": 10} and body["next_after"] == 5
    filtered = await client.get("/v1/events?types=product.sold_out,order.placed", headers=ADMIN)
    assert [e["seq"] for e in (await filtered.get_json())["items"]] == [3, 5]
    empty = await (await client.get("/v1/events?after=5", headers=ADMIN)).get_json()
    assert empty == {"items": [], "next_after": 5}


async def test_a_position_the_feed_cannot_serve_is_gone(client, store):
    body = await problem(await client.get("/v1/events?after=99", headers=ADMIN), 410, "feed-gone")
    assert (body["first"], body["last"]) == (1, 2)
    await store.prune_events(float("inf"), 1)
    page = await (await client.get("/v1/events?after=0", headers=ADMIN)).get_json()
    assert [e["seq"] for e in page["items"]] == [2]  # 0: from the oldest kept, whatever it is
    await store.prune_events(float("inf"), 1)
    body = await problem(await client.get("/v1/events?after=1", headers=ADMIN), 410, "feed-gone")
    assert (body["first"], body["last"]) == (3, 2)  # pruned after 1; nothing kept at all
    stream = await client.get("/v1/events/stream?after=99", headers=ADMIN)
    assert (await problem(stream, 410, "feed-gone"))["last"] == 2


@pytest.mark.parametrize(
    "query",
    ["after=-1", "after=x", "after=1.5", "after=%201", "after=1_0", "after=1000000000000000000",
     "limit=0", "limit=1001", "types=order.shipped", "types=", "types=order.placed,",
     "type=order.placed"],
)  # fmt: skip
async def test_bad_queries_are_refused(client, query):
    await problem(await client.get(f"/v1/events?{query}", headers=ADMIN), 422, "invalid-request")


async def test_a_bad_resume_position_is_refused_before_streaming(client):
    bad = {**ADMIN, "Last-Event-ID": "abc"}
    await problem(await client.get("/v1/events/stream", headers=bad), 422, "invalid-request")
    await problem(await client.get("/v1/products/no:such/stream"), 404, "unknown-product")
    await problem(await client.get("/v1/products/b%20c/stream"), 422, "invalid-request")
    await problem(await client.get("/v1/products/a/stream?x=1"), 422, "invalid-request")
    stream = await client.get("/v1/events/stream?after=0&tpyes=order.placed", headers=ADMIN)
    await problem(stream, 422, "invalid-request")


async def test_a_subscription_is_made_shown_replaced_and_removed(client, engine):
    made = await client.put("/v1/webhooks/shop-1", json=HOOK, headers=ADMIN)
    assert made.status_code == 201
    shown = await made.get_json()
    assert SECRET not in str(shown)  # never shown
    assert shown["url"] == HOOK["url"] and shown["types"] is None
    assert shown["cursor"] == shown["head"] == engine.feed_head and shown["backlog"] == 0
    assert shown["failing"] is False and shown["last_error"] is None
    await engine.adjust_stock("a", 1)  # nothing delivers here (the service is not running)
    got = await (await client.get("/v1/webhooks/shop-1", headers=ADMIN)).get_json()
    assert got["backlog"] == 1 and got["head"] == got["cursor"] + 1
    replaced = await client.put(
        "/v1/webhooks/shop-1", headers=ADMIN,
        json={**HOOK, "url": "https://other.example/h", "types": ["order.placed"]},
    )  # fmt: skip
    assert replaced.status_code == 200
    again = await replaced.get_json()
    assert again["cursor"] == shown["cursor"]  # a replaced subscription keeps its cursor
    assert again["types"] == ["order.placed"] and again["created_at"] == shown["created_at"]
    await client.put("/v1/webhooks/shop-0", json=HOOK, headers=ADMIN)
    listed = await (await client.get("/v1/webhooks", headers=ADMIN)).get_json()
    assert [w["id"] for w in listed["items"]] == ["shop-0", "shop-1"]
    removed = await client.delete("/v1/webhooks/shop-1", headers=ADMIN)
    assert (await removed.get_json())["id"] == "shop-1"
    await problem(await client.get("/v1/webhooks/shop-1", headers=ADMIN), 404, "webhook-not-found")
    await problem(await client.delete("/v1/webhooks/shop-1", headers=ADMIN), 404,
                  "webhook-not-found")  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"url": "ftp://127.0.0.1/hook"}, {"url": "http://127.0.0.1:9/#x"}, {"url": 5},
        {"secret": "whsec_" + "Zm9v" * 7}, {"secret": "hunter2-hunter2-hunter2-hunter2"},
        {"types": ["order.shipped"]}, {"types": []}, {"types": ["order.placed", "order.placed"]},
        {"extra": 1},
    ],
)  # fmt: skip
async def test_bad_subscriptions_are_refused_and_change_nothing(client, store, change):
    response = await client.put("/v1/webhooks/w", json={**HOOK, **change}, headers=ADMIN)
    await problem(response, 422, "invalid-request")
    assert store.webhooks.records == {}


async def test_subscriptions_need_a_json_body_and_a_valid_id(client, store):
    response = await client.put("/v1/webhooks/w", data="x", headers=ADMIN)
    await problem(response, 415, "unsupported-media-type")
    await problem(await client.put("/v1/webhooks/a%20b", json=HOOK, headers=ADMIN), 422,
                  "invalid-request")  # fmt: skip
    assert store.webhooks.records == {}


async def test_metrics_show_the_feed(client, engine):
    await client.put("/v1/webhooks/w", json=HOOK, headers=ADMIN)
    await engine.adjust_stock("a", 1)
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert "stockade_events_written_total 3.0" in text  # set (and back in stock), adjust
    assert f"stockade_feed_head {float(engine.feed_head)}" in text
    assert 'stockade_webhook_backlog{webhook="w"} 1.0' in text
    assert 'stockade_webhook_deliveries_total{outcome="delivered"} 0.0' in text
    assert "stockade_feed_lag 1.0" in text


async def test_a_head_request_opens_no_stream(client):
    for path, headers in (("/v1/products/a/stream", {}), ("/v1/events/stream", ADMIN)):
        with trio.fail_after(10):  # (a stream opened for HEAD would never end)
            response = await client.head(path, headers=headers)
        assert response.status_code == 200 and response.content_type == "text/event-stream"
    assert len(client.app.config["STOCKADE_FEED"].streams) == 0  # nothing left holding a place


def test_the_api_names_the_engines_event_types():
    assert get_args(EventType) == EVENT_TYPES
