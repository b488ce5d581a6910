"""Order history, movements and the books check over HTTP (design.md §11), through the test
client over a memory engine that keeps its history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
import trio

import stockade
from stockade import Engine, MemoryStore
from stockade.api.app import ApiSettings, create_app
from stockade.api.port import LocalBooks

TOKEN = "history-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def at(seconds: float) -> str:
    """T0 + seconds as RFC 3339 with an offset of +02:00 (any offset means the same instant)."""
    plus_two = timezone(timedelta(hours=2))
    return datetime.fromtimestamp(T0 + seconds, UTC).astimezone(plus_two).isoformat()


@pytest.fixture
async def shop(mock_clock) -> AsyncIterator[tuple[Engine, MemoryStore, Any]]:
    store = MemoryStore(keep_movements=True)
    async with stockade.open_engine(
        store=store, durability="durable", wall_clock=lambda: T0 + trio.current_time()
    ) as engine:
        app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False),
                         books=LocalBooks(store))  # fmt: skip
        async with app.test_app() as test_app:
            yield engine, store, test_app.test_client()


async def get(client: Any, url: str, status: int = 200) -> Any:
    response = await client.get(url, headers=ADMIN)
    body = await response.get_json()
    assert response.status_code == status, body
    return body


async def test_orders_are_listed_newest_first_in_pages_and_filtered(shop, mock_clock):
    engine, _, client = shop
    await engine.set_stock("a", 100)
    placed = []
    for n in range(5):
        order = await engine.place_order({"a": 1}, hold_for=3600 if n % 2 else None)
        placed.append(order)
        mock_clock.jump(10)  # created at T0, T0+10, ..., T0+40
    newest = [o.id for o in reversed(placed)]
    first = await get(client, "/v1/orders?limit=2")
    assert [o["id"] for o in first["items"]] == newest[:2]
    assert first["next_after"] == newest[1]
    second = await get(client, f"/v1/orders?limit=2&after={first['next_after']}")
    third = await get(client, f"/v1/orders?limit=2&after={second['next_after']}")
    assert [o["id"] for o in second["items"] + third["items"]] == newest[2:]
    assert third["next_after"] is None
    held = await get(client, "/v1/orders?status=reserved")
    assert [o["id"] for o in held["items"]] == [placed[3].id, placed[1].id]
    window = await get(
        client, f"/v1/orders?created_after={quote(at(5))}&created_before={quote(at(30))}"
    )
    assert [o["id"] for o in window["items"]] == [placed[2].id, placed[1].id]
    assert window["items"][0]["created_at"] == "2027-01-15T08:00:20Z"


@pytest.mark.parametrize(
    "query",
    ["status=lost", "limit=0", "limit=1001", "limit=x", "created_after=yesterday",
     "created_after=2027-01-15T08:00:00", "created_before=2027-13-01T00:00:00Z", "after=",
     "after=a%20b", "sort=asc", "status=null", "created_after=null", "created_before=null",
     "limit=null"],
)  # fmt: skip
async def test_a_bad_order_query_is_422(shop, query):
    _, _, client = shop
    body = await get(client, f"/v1/orders?{query}", 422)
    assert body["type"] == "/problems/invalid-request"


async def test_a_cursor_naming_no_order_is_404(shop):
    _, _, client = shop
    body = await get(client, "/v1/orders?after=0123456789abcdef", 404)
    assert body["detail"] == "after: no order '0123456789abcdef'"


async def test_a_service_key_lists_orders(shop):
    _, _, client = shop
    made = await client.post("/v1/keys", json={"role": "service"}, headers=ADMIN)
    key = (await made.get_json())["key"]
    listed = await client.get("/v1/orders", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200
    movements = await client.get(
        "/v1/products/a/movements", headers={"Authorization": f"Bearer {key}"}
    )
    assert movements.status_code == 403


async def test_movements_page_through_the_ledger(shop):
    engine, _, client = shop
    await engine.set_location("north")
    await engine.set_stock("a", 10)
    await engine.set_stock("a", 5, location="north")
    await engine.transfer("a", 2, "north", "default", reason="rebalance")
    order = await engine.place_order({"a": 1})
    first = await get(client, "/v1/products/a/movements?limit=2")
    kinds = [(m["kind"], m["location"], m["d_on_hand"]) for m in first["items"]]
    assert kinds == [("set", "default", 10), ("set", "north", 5)]
    second = await get(client, f"/v1/products/a/movements?limit=2&after={first['next_after']}")
    moved = [(m["kind"], m["location"], m["d_on_hand"], m["reason"]) for m in second["items"]]
    assert moved == [
        ("transferred", "default", 2, "rebalance"),
        ("transferred", "north", -2, "rebalance"),
    ]
    last = await get(client, f"/v1/products/a/movements?limit=2&after={second['next_after']}")
    assert [(m["kind"], m["order_id"]) for m in last["items"]] == [("placed", order.id)]
    assert last["next_after"] is None
    await get(client, "/v1/products/nope/movements", 404)
    for query in ("after=-1", "after=9223372036854775808", "limit=0", "after=x", "after=null",
                  "limit=null"):  # fmt: skip
        await get(client, f"/v1/products/a/movements?{query}", 422)


async def test_the_books_check_answers_what_it_found(shop):
    engine, store, client = shop
    await engine.set_stock("a", 10)
    await engine.place_order({"a": 2}, hold_for=600)
    balanced = await get(client, "/v1/admin/check")
    assert balanced == {"balanced": True, "products": 1, "levels": 1, "orders": 1,
                        "open_holds": 1, "mismatches": 0, "findings": []}  # fmt: skip
    store.state.stock["a", "default"] = (12, 1)  # a hand edit behind the engine's back
    found = await get(client, "/v1/admin/check?limit=1")
    assert not found["balanced"] and found["mismatches"] == 3 and len(found["findings"]) == 1
    assert found["findings"][0] == {
        "kind": "ledger", "sku": "a", "location": "default", "order_id": None,
        "field": "on_hand", "recorded": 12, "expected": 10,
        "detail": "a at default: on_hand is 12 in the stock table, but its movements add up to 10",
    }  # fmt: skip
    await get(client, "/v1/admin/check?limit=-1", 422)


async def test_a_server_without_a_store_has_nothing_to_check():
    async with stockade.open_engine(None) as engine:
        app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False))
        async with app.test_app() as test_app:
            body = await get(test_app.test_client(), "/v1/admin/check", 409)
    assert body["type"] == "/problems/nothing-to-check"


@pytest.mark.parametrize(
    "url",
    ["/v1/admin/check?limit=9&limit=[]", "/v1/orders?limit=5&limit=6",
     "/v1/products/a/movements?after=1&after=2"],
)  # fmt: skip
async def test_a_query_parameter_given_twice_is_422(shop, url):
    engine, _, client = shop
    await engine.set_stock("a", 10)
    body = await get(client, url, 422)
    assert "more than once" in body["detail"]
