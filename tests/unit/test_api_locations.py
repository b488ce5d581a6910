"""Locations, channels, stock per location and transfers over HTTP (design.md §7), through
quart's test client over a memory engine: what each route answers, and that every bad input
gets a clear 4xx and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import stockade
from stockade.api.app import ApiSettings, create_app
from tests.answers import ok, problem

TOKEN = "merchant-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(None) as engine:
        yield engine


@pytest.fixture
async def client(engine) -> AsyncIterator[Any]:
    app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False))
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def two_warehouses(client) -> None:
    """berlin (priority 1) and paris (priority 2); tee: 5 in berlin, 3 in paris; a channel
    ``fr`` that sells from paris only."""
    for name, priority in (("berlin", 1), ("paris", 2)):
        body = {"name": name.title(), "priority": priority, "active": True}
        await ok(await client.put(f"/v1/locations/{name}", json=body, headers=ADMIN), 201)
    for where, units in (("berlin", 5), ("paris", 3)):
        await ok(await client.put(f"/v1/products/tee/locations/{where}", json={"on_hand": units},
                                  headers=ADMIN), 201 if where == "berlin" else 200)  # fmt: skip
    await ok(await client.put("/v1/channels/fr", json={"locations": ["paris"]}, headers=ADMIN), 201)


async def levels(client, sku: str = "tee") -> dict[str, tuple[int, int, int]]:
    """``{location: (on_hand, reserved, available)}`` as GET /v1/products/{sku}/locations says."""
    page = await ok(await client.get(f"/v1/products/{sku}/locations"))
    return {i["location"]: (i["on_hand"], i["reserved"], i["available"]) for i in page["items"]}


async def hold(client, qty: int, **where: str) -> dict[str, Any]:
    body = {"lines": [{"sku": "tee", "qty": qty}], "hold_seconds": 600, **where}
    order: dict[str, Any] = await ok(await client.post("/v1/orders", json=body, headers=ADMIN), 201)
    return order


# -- a two-warehouse shop --------------------------------------------------------------------


async def test_a_two_warehouse_shop(client):
    await two_warehouses(client)
    listed = await ok(await client.get("/v1/locations"))
    assert listed["items"] == [
        {"id": "default", "name": "", "priority": 0, "active": True},
        {"id": "berlin", "name": "Berlin", "priority": 1, "active": True},
        {"id": "paris", "name": "Paris", "priority": 2, "active": True},
    ]
    assert await ok(await client.get("/v1/channels")) == {
        "items": [{"id": "fr", "locations": ["paris"]}]
    }
    assert await ok(await client.get("/v1/products/tee")) == {
        "sku": "tee", "on_hand": 8, "reserved": 0, "available": 8, "on_sale": True,
    }  # fmt: skip
    fr = await ok(await client.get("/v1/products/tee", query_string={"channel": "fr"}))
    assert (fr["on_hand"], fr["available"]) == (3, 3)

    split = await hold(client, 6)  # berlin first (priority), the rest from paris
    assert split["allocations"] == {"tee": {"berlin": 5, "paris": 1}}
    from_fr = await hold(client, 1, channel="fr")
    assert from_fr["allocations"] == {"tee": {"paris": 1}} and from_fr["channel"] == "fr"
    await problem(await client.post("/v1/orders", headers=ADMIN, json={
        "lines": [{"sku": "tee", "qty": 2}], "channel": "fr"}), 409, "out-of-stock")  # fmt: skip
    assert await levels(client) == {"berlin": (5, 5, 0), "paris": (3, 2, 1)}

    await ok(await client.post(f"/v1/orders/{split['id']}/cancel", headers=ADMIN))
    pinned = await hold(client, 2, location="berlin")  # click and collect
    assert pinned["allocations"] == {"tee": {"berlin": 2}} and pinned["location"] == "berlin"

    moved = await ok(await client.post("/v1/transfers", headers=ADMIN, json={
        "sku": "tee", "qty": 3, "source": "berlin", "destination": "paris",
        "reason": "rebalance"}))  # fmt: skip
    assert moved["items"] == [
        {"sku": "tee", "location": "berlin", "on_hand": 2, "reserved": 2, "available": 0,
         "active": True},
        {"sku": "tee", "location": "paris", "on_hand": 6, "reserved": 1, "available": 5,
         "active": True},
    ]  # fmt: skip
    fr = await ok(await client.get("/v1/products/tee", query_string={"channel": "fr"}))
    assert fr["available"] == 5

    # closing paris takes its units out of every view; its hold stays and can be confirmed
    await ok(await client.put("/v1/locations/paris", headers=ADMIN,
                              json={"name": "Paris", "priority": 2, "active": False}))  # fmt: skip
    assert (await ok(await client.get("/v1/products/tee")))["available"] == 0
    assert await levels(client) == {"berlin": (2, 2, 0), "paris": (6, 1, 0)}
    confirmed = await ok(await client.post(f"/v1/orders/{from_fr['id']}/confirm", headers=ADMIN))
    assert confirmed["status"] == "confirmed"
    assert await levels(client) == {"berlin": (2, 2, 0), "paris": (5, 0, 0)}


async def test_an_order_when_every_location_is_closed_is_out_of_stock(client):
    await two_warehouses(client)
    for name in ("default", "berlin", "paris"):
        await ok(await client.patch(f"/v1/locations/{name}", json={"active": False},
                                    headers=ADMIN))  # fmt: skip
    assert (await ok(await client.get("/v1/products/tee")))["available"] == 0
    for where in ({}, {"channel": "fr"}, {"location": "berlin"}):
        body = {"lines": [{"sku": "tee", "qty": 1}], "hold_seconds": 60, **where}
        refused = await problem(await client.post("/v1/orders", json=body, headers=ADMIN), 409,
                                "out-of-stock")  # fmt: skip
        assert refused["shortages"] == [{"sku": "tee", "requested": 1, "available": 0}]
    assert await levels(client) == {"berlin": (5, 0, 0), "paris": (3, 0, 0)}


async def test_put_location_creates_then_replaces_whole_and_names_a_missing_field(client):
    body = {"name": "X", "priority": -4, "active": False}
    made = await ok(await client.put("/v1/locations/x", json=body, headers=ADMIN), 201)
    assert made == {"id": "x", "name": "X", "priority": -4, "active": False}
    for missing in ("name", "priority", "active"):
        partial = {k: v for k, v in body.items() if k != missing}
        answer = await client.put("/v1/locations/x", json=partial, headers=ADMIN)
        refused = await problem(answer, 422, "invalid-request")
        assert f"`{missing}`" in refused["detail"]
    whole = {"name": "", "priority": 0, "active": True}
    again = await ok(await client.put("/v1/locations/x", headers=ADMIN, json=whole))
    assert again == {"id": "x", "name": "", "priority": 0, "active": True}
    changed = await ok(await client.put("/v1/channels/c", json={"locations": ["x"]},
                                        headers=ADMIN), 201)  # fmt: skip
    assert changed == {"id": "c", "locations": ["x"]}
    replaced = await ok(await client.put("/v1/channels/c", json={"locations": ["default", "x"]},
                                         headers=ADMIN))  # fmt: skip
    assert replaced == {"id": "c", "locations": ["default", "x"]}


async def test_patch_location_changes_only_the_fields_given(client, engine):
    await two_warehouses(client)
    closed = await ok(await client.patch("/v1/locations/berlin", json={"active": False},
                                         headers=ADMIN))  # fmt: skip
    assert closed == {"id": "berlin", "name": "Berlin", "priority": 1, "active": False}
    assert (await ok(await client.get("/v1/products/tee")))["available"] == 3
    changes = {"name": "Berlin Mitte", "priority": 5}
    renamed = await ok(await client.patch("/v1/locations/berlin", headers=ADMIN, json=changes))
    assert renamed == {"id": "berlin", "name": "Berlin Mitte", "priority": 5, "active": False}
    same = await ok(await client.patch("/v1/locations/berlin", json={}, headers=ADMIN))
    assert same == renamed
    reopened = await ok(await client.patch("/v1/locations/berlin", json={"active": True},
                                           headers=ADMIN))  # fmt: skip
    assert reopened == {**renamed, "active": True}
    assert [loc["id"] for loc in await_items(await ok(await client.get("/v1/locations")))] == [
        "default", "paris", "berlin"]  # priority 5 now comes after paris (2)  # fmt: skip
    assert (await ok(await client.get("/v1/products/tee")))["available"] == 8
    unknown = await client.patch("/v1/locations/nowhere", json={"active": False}, headers=ADMIN)
    missing = await problem(unknown, 404, "unknown-location")
    assert "nowhere" in missing["detail"]
    assert not engine.location_exists("nowhere")


def await_items(page: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_stock_per_location_and_adjustments_there(client, engine):
    created = await ok(await client.put("/v1/products/mug/locations/default",
                                        json={"on_hand": 4}, headers=ADMIN), 201)  # fmt: skip
    assert created == {"sku": "mug", "location": "default", "on_hand": 4, "reserved": 0,
                       "available": 4, "active": True}  # fmt: skip
    shop = {"name": "", "priority": 0, "active": True}
    await ok(await client.put("/v1/locations/shop", json=shop, headers=ADMIN), 201)
    at_shop = await ok(await client.put("/v1/products/mug/locations/shop", json={"on_hand": 2},
                                        headers=ADMIN))  # fmt: skip
    assert (at_shop["location"], at_shop["on_hand"]) == ("shop", 2)
    adjusted = await ok(await client.post("/v1/products/mug/adjustments", headers=ADMIN,
                                          json={"delta": -1, "location": "shop"}))  # fmt: skip
    assert adjusted == {"sku": "mug", "on_hand": 5, "reserved": 0, "available": 5}
    plain = await ok(await client.post("/v1/products/mug/adjustments", json={"delta": 3},
                                       headers=ADMIN))  # fmt: skip
    assert plain["on_hand"] == 8  # no location: the default one, as before §7
    assert await levels(client, "mug") == {"default": (7, 0, 7), "shop": (1, 0, 1)}


# -- bad input: a clear 4xx, and nothing changed ---------------------------------------------


async def snapshot(client, engine) -> tuple[Any, ...]:
    return (
        await ok(await client.get("/v1/locations")),
        await ok(await client.get("/v1/channels")),
        await levels(client),
        await ok(await client.get("/v1/products")),
        engine.statistics().transfers,
        engine.statistics().placed,
    )


WHOLE = {"name": "X", "priority": 0, "active": True}
BAD = [
    # locations
    ("put", "/v1/locations/a%20b", WHOLE, 422, "invalid-request"),
    ("put", "/v1/locations/" + "x" * 129, WHOLE, 422, "invalid-request"),
    ("patch", "/v1/locations/a%20b", {}, 422, "invalid-request"),
    ("patch", "/v1/locations/nowhere", {"active": False}, 404, "unknown-location"),
    ("patch", "/v1/locations/berlin", {"name": None}, 422, "invalid-request"),
    ("patch", "/v1/locations/berlin", {"priority": 10**7}, 422, "invalid-request"),
    ("patch", "/v1/locations/berlin", {"id": "x"}, 422, "invalid-request"),
    ("put", "/v1/locations/x", {**WHOLE, "name": "n" * 201}, 422, "invalid-request"),
    ("put", "/v1/locations/x", {"priority": 1, "active": True}, 422, "invalid-request"),
    ("put", "/v1/locations/x", {"priority": 10**7}, 422, "invalid-request"),
    ("put", "/v1/locations/x", {"priority": 1.5}, 422, "invalid-request"),
    ("put", "/v1/locations/x", {"active": "yes"}, 422, "invalid-request"),
    ("put", "/v1/locations/x", {"id": "x"}, 422, "invalid-request"),
    # channels
    ("put", "/v1/channels/web", {"locations": ["nowhere"]}, 404, "unknown-location"),
    ("put", "/v1/channels/web", {"locations": ["berlin", "nowhere"]}, 404, "unknown-location"),
    ("put", "/v1/channels/web", {"locations": []}, 422, "invalid-request"),
    ("put", "/v1/channels/web", {"locations": ["berlin", "berlin"]}, 422, "invalid-request"),
    ("put", "/v1/channels/web", {"locations": ["bad id"]}, 422, "invalid-request"),
    ("put", "/v1/channels/web", {"locations": "berlin"}, 422, "invalid-request"),
    ("put", "/v1/channels/b%20c", {"locations": ["berlin"]}, 422, "invalid-request"),
    ("put", "/v1/channels/fr", {}, 422, "invalid-request"),
    # stock per location
    ("put", "/v1/products/tee/locations/nowhere", {"on_hand": 1}, 404, "unknown-location"),
    ("put", "/v1/products/new/locations/nowhere", {"on_hand": 1}, 404, "unknown-location"),
    ("put", "/v1/products/tee/locations/a%20b", {"on_hand": 1}, 422, "invalid-request"),
    ("put", "/v1/products/tee/locations/berlin", {"on_hand": -1}, 422, "invalid-request"),
    ("put", "/v1/products/tee/locations/berlin", {"on_hand": 1}, 409, "stock-conflict"),
    ("put", "/v1/products/b%20d/locations/berlin", {"on_hand": 1}, 422, "invalid-request"),
    ("post", "/v1/products/tee/adjustments", {"delta": 1, "location": "nowhere"}, 404,
     "unknown-location"),
    ("post", "/v1/products/tee/adjustments", {"delta": -4, "location": "berlin"}, 409,
     "stock-conflict"),
    ("post", "/v1/products/tee/adjustments", {"delta": 1, "location": "a b"}, 422,
     "invalid-request"),
    # reads
    ("get", "/v1/products/nope/locations", None, 404, "unknown-product"),
    ("get", "/v1/products/a%20b/locations", None, 422, "invalid-request"),
    ("get", "/v1/products/tee?channel=nowhere", None, 404, "unknown-channel"),
    ("get", "/v1/products/tee?channel=a%20b", None, 422, "invalid-request"),
    ("get", "/v1/products/tee?channel=", None, 422, "invalid-request"),
    # transfers
    ("post", "/v1/transfers", {"sku": "tee", "qty": 1, "source": "berlin",
                               "destination": "berlin"}, 422, "invalid-request"),
    ("post", "/v1/transfers", {"sku": "tee", "qty": 0, "source": "berlin",
                               "destination": "paris"}, 422, "invalid-request"),
    ("post", "/v1/transfers", {"sku": "tee", "qty": -2, "source": "berlin",
                               "destination": "paris"}, 422, "invalid-request"),
    ("post", "/v1/transfers", {"sku": "tee", "qty": 4, "source": "berlin",
                               "destination": "paris"}, 409, "out-of-stock"),
    ("post", "/v1/transfers", {"sku": "nope", "qty": 1, "source": "berlin",
                               "destination": "paris"}, 404, "unknown-product"),
    ("post", "/v1/transfers", {"sku": "tee", "qty": 1, "source": "nowhere",
                               "destination": "paris"}, 404, "unknown-location"),
    ("post", "/v1/transfers", {"sku": "tee", "qty": 1, "source": "berlin",
                               "destination": "nowhere"}, 404, "unknown-location"),
    ("post", "/v1/transfers", {"sku": "tee", "qty": 1, "source": "berlin"}, 422,
     "invalid-request"),
    # orders
    ("post", "/v1/orders", {"lines": [{"sku": "tee", "qty": 1}], "location": "nowhere"}, 404,
     "unknown-location"),
    ("post", "/v1/orders", {"lines": [{"sku": "tee", "qty": 1}], "channel": "nowhere"}, 404,
     "unknown-channel"),
    ("post", "/v1/orders", {"lines": [{"sku": "tee", "qty": 1}], "channel": "fr",
                            "location": "berlin"}, 422, "invalid-request"),
    ("post", "/v1/orders", {"lines": [{"sku": "tee", "qty": 1}], "location": "a b"}, 422,
     "invalid-request"),
    ("post", "/v1/orders", {"lines": [{"sku": "tee", "qty": 4}], "location": "paris"}, 409,
     "out-of-stock"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "body", "status", "slug"), BAD)
async def test_bad_input_is_refused_and_changes_nothing(client, engine, method, url, body,
                                                        status, slug):  # fmt: skip
    await two_warehouses(client)
    await hold(client, 2, location="berlin")  # berlin: 5 on hand, 2 reserved
    before = await snapshot(client, engine)
    response = await client.open(url, method=method.upper(), json=body, headers=ADMIN)
    refused = await problem(response, status, slug)
    if slug == "out-of-stock":
        assert refused["shortages"][0]["sku"] == "tee"
    assert await snapshot(client, engine) == before


async def test_a_short_transfer_names_what_the_source_has(client):
    await two_warehouses(client)
    await hold(client, 4, location="berlin")
    refused = await problem(await client.post("/v1/transfers", headers=ADMIN, json={
        "sku": "tee", "qty": 2, "source": "berlin", "destination": "paris"}), 409,
        "out-of-stock")  # fmt: skip
    assert refused["shortages"] == [{"sku": "tee", "requested": 2, "available": 1}]


# -- metrics --------------------------------------------------------------------------------


async def test_metrics_count_locations_and_transfers(client):
    await two_warehouses(client)
    await ok(await client.post("/v1/transfers", headers=ADMIN, json={
        "sku": "tee", "qty": 1, "source": "berlin", "destination": "paris"}))  # fmt: skip
    await problem(await client.post("/v1/transfers", headers=ADMIN, json={
        "sku": "tee", "qty": 99, "source": "berlin", "destination": "paris"}), 409,
        "out-of-stock")  # fmt: skip
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert "stockade_locations 3.0" in text
    assert "stockade_transfers_total 1.0" in text  # refused ones are not transfers
