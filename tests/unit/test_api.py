"""The HTTP API through quart's test client, over a real (memory) engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import stockade
from stockade.api.app import ApiSettings, create_app
from tests.fakes import StalledStore

TOKEN = "s3cret-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client() -> AsyncIterator[object]:
    async with stockade.open_engine(None) as engine:
        app = create_app(engine, ApiSettings(admin_token=TOKEN, max_body_bytes=4096))
        async with app.test_app() as test_app:
            yield test_app.test_client()


async def put_stock(client, sku, on_hand):
    return await client.put(f"/v1/products/{sku}", json={"on_hand": on_hand}, headers=ADMIN)


async def assert_problem(response, status, slug):
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body = await response.get_json()
    assert body["type"] == f"/problems/{slug}" and body["status"] == status, body


async def test_stock_and_orders_round_trip(client):
    created = await put_stock(client, "tee", 3)
    assert created.status_code == 201
    assert await created.get_json() == {"sku": "tee", "on_hand": 3, "reserved": 0, "available": 3}
    assert (await put_stock(client, "tee", 5)).status_code == 200
    adjusted = await client.post(
        "/v1/products/tee/adjustments", json={"delta": -1, "reason": "damaged"}, headers=ADMIN
    )
    assert (await adjusted.get_json())["on_hand"] == 4
    placed = await client.post(
        "/v1/orders", json={"lines": [{"sku": "tee", "qty": 2}], "hold_seconds": 600}, headers=ADMIN
    )
    assert placed.status_code == 201
    order = await placed.get_json()
    assert order["status"] == "reserved" and order["lines"] == {"tee": 2}
    confirmed = await client.post(f"/v1/orders/{order['id']}/confirm", headers=ADMIN)
    assert (await confirmed.get_json())["status"] == "confirmed"
    again = await client.post(f"/v1/orders/{order['id']}/confirm", headers=ADMIN)
    assert again.status_code == 200
    assert (await (await client.get(f"/v1/orders/{order['id']}")).get_json())["status"] == (
        "confirmed"
    )
    cancelled = await client.post(f"/v1/orders/{order['id']}/cancel", headers=ADMIN)
    assert (await cancelled.get_json())["status"] == "cancelled"
    stock = await (await client.get("/v1/products/tee")).get_json()
    assert stock["on_hand"] == 4
    listing = await (await client.get("/v1/products", query_string={"limit": 1})).get_json()
    assert [p["sku"] for p in listing["items"]] == ["tee"] and listing["next_after"] == "tee"


async def test_out_of_stock_is_409_with_shortages(client):
    await put_stock(client, "a", 1)
    response = await client.post(
        "/v1/orders", json={"lines": [{"sku": "a", "qty": 2}]}, headers=ADMIN
    )
    await assert_problem(response, 409, "out-of-stock")
    body = await response.get_json()
    assert body["shortages"] == [{"sku": "a", "requested": 2, "available": 1}]


async def test_idempotency_key_replays_the_original_order(client):
    await put_stock(client, "a", 5)
    body = {"lines": [{"sku": "a", "qty": 1}]}
    keyed = {**ADMIN, "Idempotency-Key": "cart-1"}
    first = await client.post("/v1/orders", json=body, headers=keyed)
    again = await client.post("/v1/orders", json=body, headers=keyed)
    assert (await first.get_json())["id"] == (await again.get_json())["id"]
    other = await client.post("/v1/orders", json={"lines": [{"sku": "a", "qty": 2}]}, headers=keyed)
    await assert_problem(other, 409, "idempotency-conflict")
    assert (await (await client.get("/v1/products/a")).get_json())["on_hand"] == 4


async def test_merchant_routes_need_the_token(client):
    no_token = await client.put("/v1/products/a", json={"on_hand": 1})
    await assert_problem(no_token, 401, "unauthorized")
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await client.put(
        "/v1/products/a", json={"on_hand": 1}, headers={"Authorization": "Bearer nope"}
    )
    await assert_problem(wrong, 401, "unauthorized")  # a token that is no key (design.md §10)
    assert (await client.get("/v1/products/a")).status_code == 404  # nothing was created


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"lines": []}, 422),
        ({"lines": [{"sku": "a", "qty": 0}]}, 422),
        ({"lines": [{"sku": "a", "qty": -3}]}, 422),
        ({"lines": [{"sku": "a", "qty": 10**9}]}, 422),
        ({"lines": [{"sku": "a", "qty": "1"}]}, 422),
        ({"lines": [{"sku": "a", "qty": 1.5}]}, 422),
        ({"lines": [{"sku": "bad sku", "qty": 1}]}, 422),
        ({"lines": [{"sku": "a", "qty": 1}, {"sku": "a", "qty": 1}]}, 422),
        ({"lines": [{"sku": f"s{i}", "qty": 1} for i in range(101)]}, 422),
        ({"lines": [{"sku": "a", "qty": 1}], "extra": 1}, 422),
        ({"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 0}, 422),
        ({"lines": [{"sku": "nope", "qty": 1}]}, 404),
        ([1, 2], 422),
    ],
)
async def test_bad_orders_get_4xx_and_change_nothing(client, body, status):
    await put_stock(client, "a", 5)
    response = await client.post("/v1/orders", json=body, headers=ADMIN)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    assert (await (await client.get("/v1/products/a")).get_json())["available"] == 5


async def test_malformed_oversized_and_wrong_type_bodies(client):
    await put_stock(client, "a", 5)
    as_json = {**ADMIN, "Content-Type": "application/json"}
    malformed = await client.post("/v1/orders", data=b"{not json", headers=as_json)
    await assert_problem(malformed, 400, "malformed-json")
    huge = await client.post("/v1/orders", data=b"[" + b"1," * 5000 + b"1]", headers=as_json)
    await assert_problem(huge, 413, "request-entity-too-large")
    text = await client.post(
        "/v1/orders", data=b"a=1", headers={**ADMIN, "Content-Type": "text/plain"}
    )
    await assert_problem(text, 415, "unsupported-media-type")
    negative = await client.put("/v1/products/a", json={"on_hand": -1}, headers=ADMIN)
    await assert_problem(negative, 422, "invalid-request")
    assert (await (await client.get("/v1/products/a")).get_json())["on_hand"] == 5


async def test_integral_numbers_are_integers(client):
    """JSON Schema's integer admits 5.0, so the server does too (and still refuses 5.5)."""
    created = await client.put("/v1/products/a", json={"on_hand": 5.0}, headers=ADMIN)
    assert created.status_code == 201
    assert (await created.get_json())["on_hand"] == 5
    adjusted = await client.post(
        "/v1/products/a/adjustments", json={"delta": 2.0, "reason": "count"}, headers=ADMIN
    )
    assert (await adjusted.get_json())["on_hand"] == 7
    placed = await client.post(
        "/v1/orders",
        json={"lines": [{"sku": "a", "qty": 2.0}], "hold_seconds": 60.0},
        headers=ADMIN,
    )
    assert placed.status_code == 201
    order = await placed.get_json()
    assert order["lines"] == {"a": 2} and order["status"] == "reserved"
    half = await client.put("/v1/products/a", json={"on_hand": 5.5}, headers=ADMIN)
    await assert_problem(half, 422, "invalid-request")
    text = await client.put("/v1/products/a", json={"on_hand": "5"}, headers=ADMIN)
    await assert_problem(text, 422, "invalid-request")
    assert (await (await client.get("/v1/products/a")).get_json())["on_hand"] == 7


async def test_stock_conflicts_are_409_and_bad_adjustments_422(client):
    """A change the product's stock refuses now is a conflict (the same call may succeed
    later); a zero delta or a sku over two lines can never succeed."""
    await put_stock(client, "a", 5)
    await client.post(
        "/v1/orders", json={"lines": [{"sku": "a", "qty": 3}], "hold_seconds": 60}, headers=ADMIN
    )
    below = await client.post("/v1/products/a/adjustments", json={"delta": -3}, headers=ADMIN)
    await assert_problem(below, 409, "stock-conflict")
    await assert_problem(await put_stock(client, "a", 2), 409, "stock-conflict")
    zero = await client.post("/v1/products/a/adjustments", json={"delta": 0}, headers=ADMIN)
    await assert_problem(zero, 422, "invalid-request")
    two_lines = await client.put("/v1/products/a%0A", json={"on_hand": 1}, headers=ADMIN)
    await assert_problem(two_lines, 422, "invalid-request")
    newline = await client.post(
        "/v1/orders", json={"lines": [{"sku": "a\n", "qty": 1}]}, headers=ADMIN
    )
    await assert_problem(newline, 422, "invalid-request")
    level = await (await client.get("/v1/products/a")).get_json()
    assert (level["on_hand"], level["reserved"]) == (5, 3)


async def test_unknown_things_are_404_and_transitions_409(client):
    await assert_problem(await client.get("/v1/orders/nope"), 404, "order-not-found")
    await assert_problem(await client.get("/v1/products/nope"), 404, "unknown-product")
    await assert_problem(await client.get("/v1/nothing-here"), 404, "not-found")
    await put_stock(client, "a", 5)
    placed = await client.post(
        "/v1/orders", json={"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 60}, headers=ADMIN
    )
    order_id = (await placed.get_json())["id"]
    await client.post(f"/v1/orders/{order_id}/cancel", headers=ADMIN)
    await assert_problem(
        await client.post(f"/v1/orders/{order_id}/confirm", headers=ADMIN),
        409,
        "invalid-transition",
    )


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and (await ready.get_json())["ready"] is True


async def test_metrics_count_orders_and_engine_state(client):
    await put_stock(client, "a", 1)
    await client.post("/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]}, headers=ADMIN)
    await client.post("/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]}, headers=ADMIN)
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = (await response.get_data()).decode()
    assert "stockade_orders_placed_total 1.0" in text
    assert "stockade_orders_out_of_stock_total 1.0" in text
    assert 'stockade_order_latency_seconds_count{outcome="placed"} 1.0' in text
    assert 'stockade_order_latency_seconds_count{outcome="409"} 1.0' in text
    assert "stockade_journal_healthy 1.0" in text
    assert "stockade_products 1.0" in text


async def test_openapi_is_generated_from_the_types(client):
    document = await (await client.get("/openapi.json")).get_json()
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    assert schemas["PlaceOrder"]["properties"]["lines"]["maxItems"] == 100
    assert set(schemas["Order"]["required"]) >= {"id", "status", "lines", "created_at"}
    assert "409" in document["paths"]["/v1/orders"]["post"]["responses"]
    page = await client.get("/docs")
    assert page.status_code == 200
    html = (await page.get_data()).decode()
    assert "/v1/orders/{order_id}/confirm" in html and "http" not in html.split("<body>")[1]


async def test_requests_carry_an_id(client):
    mine = await client.get("/healthz", headers={"X-Request-Id": "abc123"})
    assert mine.headers["X-Request-Id"] == "abc123"
    assert len((await client.get("/healthz")).headers["X-Request-Id"]) == 16


async def test_a_full_journal_is_503_with_retry_after(autojump_clock):
    store = StalledStore()
    async with stockade.open_engine(store=store, journal_size=2, durability="fast") as engine:
        app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False))
        async with app.test_app() as test_app:
            client = test_app.test_client()
            await put_stock(client, "a", 5)
            await trio.testing.wait_all_tasks_blocked()  # the writer is stuck on "a"
            await put_stock(client, "b", 5)  # with "a", the journal of 2 is now full
            refused = await client.post(
                "/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]}, headers=ADMIN
            )
            await assert_problem(refused, 503, "overloaded")
            assert refused.headers["Retry-After"] == "1"
            ready = await client.get("/readyz")
            assert (await ready.get_json())["journal_buffered"] == 2
            store.resume()
