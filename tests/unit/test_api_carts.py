"""Carts over HTTP (design.md §8): PATCH /v1/orders/{id} and POST /v1/orders/{id}/extend,
through quart's test client over a memory engine on trio's mock clock (holds lapse and reach
their cap without a real wait)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import trio

import stockade
from stockade.api.app import ApiSettings, create_app
from tests.answers import ok, problem

TOKEN = "merchant-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LIFETIME = timedelta(hours=1)  # the engine's max_hold_lifetime here


def lines(**qty: int) -> list[dict[str, Any]]:
    return [{"sku": sku, "qty": n} for sku, n in qty.items()]


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(None, max_hold_lifetime=LIFETIME) as engine:
        await engine.set_stock("a", 10)
        await engine.set_stock("b", 10)
        yield engine


async def open_client(engine, *, public_holds: bool = False) -> Any:
    settings = ApiSettings(admin_token=TOKEN, log_requests=False, public_holds=public_holds)
    return create_app(engine, settings).test_app()


@pytest.fixture
async def client(engine) -> AsyncIterator[Any]:
    async with await open_client(engine) as test_app:
        yield test_app.test_client()


@pytest.fixture
async def public(engine) -> AsyncIterator[Any]:
    async with await open_client(engine, public_holds=True) as test_app:
        yield test_app.test_client()


async def hold(client, headers=ADMIN, hold_seconds: int = 600, **qty: int) -> dict[str, Any]:
    body = {"lines": lines(**qty), "hold_seconds": hold_seconds}
    order: dict[str, Any] = await ok(await client.post("/v1/orders", json=body, headers=headers),
                                     201)  # fmt: skip
    return order


async def reserved(engine) -> tuple[int, int]:
    return (await engine.stock("a")).reserved, (await engine.stock("b")).reserved


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def test_a_cart_edited_and_extended_with_replayed_keys(client, engine, autojump_clock):
    order = await hold(client, a=1)
    url = f"/v1/orders/{order['id']}"
    edit = {**ADMIN, "Idempotency-Key": "edit-1"}
    edited = await ok(await client.patch(url, json={"lines": lines(a=3, b=2)}, headers=edit))
    assert edited["lines"] == {"a": 3, "b": 2} and edited["status"] == "reserved"
    assert edited["expires_at"] == order["expires_at"]  # an edit never moves the deadline
    assert await reserved(engine) == (3, 2)
    replayed = await ok(await client.patch(url, json={"lines": lines(a=3, b=2)}, headers=edit))
    assert replayed == edited and await reserved(engine) == (3, 2)  # applied once
    await problem(await client.patch(url, json={"lines": lines(a=1)}, headers=edit), 409,
                  "idempotency-conflict")  # fmt: skip
    assert await reserved(engine) == (3, 2)

    shrunk = await ok(await client.patch(url, json={"lines": lines(b=1)}, headers=ADMIN))
    assert shrunk["lines"] == {"b": 1} and await reserved(engine) == (0, 1)

    await trio.sleep(300)
    ext = {**ADMIN, "Idempotency-Key": "ext-1"}
    extended = await ok(await client.post(f"{url}/extend", json={"hold_seconds": 900},
                                          headers=ext))  # fmt: skip
    assert at(extended["expires_at"]) == pytest.approx(at(order["created_at"]) + 300 + 900)
    await trio.sleep(60)
    again = await ok(await client.post(f"{url}/extend", json={"hold_seconds": 900}, headers=ext))
    assert again == extended  # the retry is not pushed to now + 900
    await problem(await client.post(f"{url}/extend", json={"hold_seconds": 60}, headers=ext),
                  409, "idempotency-conflict")  # fmt: skip

    confirmed = await ok(await client.post(f"{url}/confirm", headers=ADMIN))
    assert confirmed["lines"] == {"b": 1} and confirmed["allocations"] == {"b": {"default": 1}}
    assert (await engine.stock("b")).on_hand == 9
    stats = engine.statistics()
    assert (stats.changed, stats.extended, stats.replayed) == (2, 1, 2)


async def test_a_short_edit_is_409_with_shortages_and_leaves_the_cart(client, engine):
    order = await hold(client, a=2, b=1)
    refused = await problem(
        await client.patch(f"/v1/orders/{order['id']}", json={"lines": lines(a=11, b=12)},
                           headers=ADMIN), 409, "out-of-stock",
    )  # fmt: skip
    assert refused["shortages"] == [
        {"sku": "a", "requested": 9, "available": 8},  # what the edit had to add
        {"sku": "b", "requested": 11, "available": 9},
    ]
    assert (await engine.get_order(order["id"])).lines == {"a": 2, "b": 1}
    assert await reserved(engine) == (2, 1)


async def test_extensions_stop_at_the_maximum_lifetime(client, engine, autojump_clock):
    order = await hold(client, a=1, hold_seconds=3000)
    url = f"/v1/orders/{order['id']}/extend"
    await trio.sleep(2000)
    capped = await ok(await client.post(url, json={"hold_seconds": 7200}, headers=ADMIN))
    cap = at(order["created_at"]) + LIFETIME.total_seconds()
    assert at(capped["expires_at"]) == pytest.approx(cap)  # the deadline actually granted
    refused = await problem(await client.post(url, json={"hold_seconds": 60}, headers=ADMIN),
                            409, "invalid-transition")  # fmt: skip
    assert "maximum lifetime" in refused["detail"]
    assert (await engine.get_order(order["id"])).expires_at == datetime.fromisoformat(
        capped["expires_at"]
    )
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert "stockade_holds_extended_total 1.0" in text
    assert "stockade_hold_extensions_refused_total 1.0" in text
    await trio.sleep(LIFETIME.total_seconds())
    assert (await engine.get_order(order["id"])).status == "expired"


async def test_metrics_count_edits(client):
    order = await hold(client, a=1)
    await ok(await client.patch(f"/v1/orders/{order['id']}", json={"lines": lines(a=2)},
                                headers=ADMIN))  # fmt: skip
    text = await (await client.get("/metrics")).get_data(as_text=True)
    assert "stockade_orders_changed_total 1.0" in text


# -- bad input: a clear 4xx, and nothing changed ---------------------------------------------

EDITS = [
    ({"lines": []}, {}, 422, "invalid-request"),
    ({"lines": lines(a=0)}, {}, 422, "invalid-request"),
    ({"lines": lines(a=1, b=0)}, {}, 422, "invalid-request"),
    ({"lines": lines(a=-1)}, {}, 422, "invalid-request"),
    ({"lines": [{"sku": "a", "qty": 1}, {"sku": "a", "qty": 2}]}, {}, 422, "invalid-request"),
    ({"lines": lines(nope=1)}, {}, 404, "unknown-product"),
    ({"lines": [{"sku": "a b", "qty": 1}]}, {}, 422, "invalid-request"),
    ({"lines": [{"sku": f"s{i}", "qty": 1} for i in range(101)]}, {}, 422, "invalid-request"),
    ({"lines": lines(a=1), "hold_seconds": 60}, {}, 422, "invalid-request"),
    ({}, {}, 422, "invalid-request"),
    ({"lines": lines(a=4)}, {"Idempotency-Key": "has space"}, 422, "invalid-request"),
    ({"lines": lines(a=4)}, {"Idempotency-Key": "used"}, 409, "idempotency-conflict"),
]
EXTENSIONS = [
    ({"hold_seconds": 0}, {}, 422, "invalid-request"),
    ({"hold_seconds": -5}, {}, 422, "invalid-request"),
    ({"hold_seconds": 86401}, {}, 422, "invalid-request"),
    ({"hold_seconds": 1.5}, {}, 422, "invalid-request"),
    ({"hold_seconds": None}, {}, 422, "invalid-request"),
    ({}, {}, 422, "invalid-request"),
    ({"hold_seconds": 60}, {"Idempotency-Key": ""}, 422, "invalid-request"),
    ({"hold_seconds": 60}, {"Idempotency-Key": "used"}, 409, "idempotency-conflict"),
]


async def frozen(engine, order_id: str) -> tuple[Any, ...]:
    stats = engine.statistics()
    return (await engine.get_order(order_id), await reserved(engine), stats.changed,
            stats.extended)  # fmt: skip


@pytest.mark.parametrize(("route", "body", "headers", "status", "slug"),
                         [("edit", *case) for case in EDITS]
                         + [("extend", *case) for case in EXTENSIONS])  # fmt: skip
async def test_bad_cart_calls_are_refused_and_change_nothing(
    client, engine, route, body, headers, status, slug
):
    order = await hold(client, a=2)
    await ok(await client.patch(f"/v1/orders/{order['id']}", json={"lines": lines(a=3)},
                                headers={**ADMIN, "Idempotency-Key": "used"}))  # fmt: skip
    before = await frozen(engine, order["id"])
    url = f"/v1/orders/{order['id']}" + ("/extend" if route == "extend" else "")
    method = client.patch if route == "edit" else client.post
    await problem(await method(url, json=body, headers={**ADMIN, **headers}), status, slug)
    assert await frozen(engine, order["id"]) == before


@pytest.mark.parametrize("state", ["unknown", "confirmed", "cancelled", "expired", "purchase"])
@pytest.mark.parametrize("route", ["edit", "extend"])
async def test_only_a_held_order_can_be_edited_or_extended(
    client, engine, state, route, autojump_clock
):
    order = await hold(client, a=2, hold_seconds=60)
    order_id = order["id"]
    if state == "unknown":
        order_id = "0" * 32
    elif state == "purchase":
        body = {"lines": lines(a=2)}
        order_id = (await ok(await client.post("/v1/orders", json=body, headers=ADMIN), 201))["id"]
    elif state == "expired":
        await trio.sleep(61)
    else:
        verb = "confirm" if state == "confirmed" else "cancel"
        await ok(await client.post(f"/v1/orders/{order_id}/{verb}", headers=ADMIN))
    before = await engine.stock("a")
    if route == "edit":
        response = await client.patch(f"/v1/orders/{order_id}", json={"lines": lines(a=1)},
                                      headers=ADMIN)  # fmt: skip
    else:
        response = await client.post(f"/v1/orders/{order_id}/extend", json={"hold_seconds": 60},
                                     headers=ADMIN)  # fmt: skip
    if state == "unknown":
        await problem(response, 404, "order-not-found")
    else:
        refused = await problem(response, 409, "invalid-transition")
        assert f"it is {'confirmed' if state == 'purchase' else state}" in refused["detail"]
        assert (await engine.get_order(order_id)).lines == {"a": 2}
    assert await engine.stock("a") == before


# -- who may edit and extend -----------------------------------------------------------------


async def test_public_holds_edit_and_extend_their_own_hold(public, engine, autojump_clock):
    order = await hold(public, headers={}, a=1, hold_seconds=60)
    url = f"/v1/orders/{order['id']}"
    edited = await ok(await public.patch(url, json={"lines": lines(a=2, b=1)},
                                         headers={"Idempotency-Key": "anon-edit"}))  # fmt: skip
    assert edited["lines"] == {"a": 2, "b": 1} and await reserved(engine) == (2, 1)
    extended = await ok(await public.post(f"{url}/extend", json={"hold_seconds": 600}))
    assert at(extended["expires_at"]) > at(order["expires_at"])
    await ok(await public.post(f"{url}/confirm", headers=ADMIN))  # the shop's backend, keyed
    await problem(await public.patch(url, json={"lines": lines(a=1)}), 409, "invalid-transition")
    await problem(await public.post(f"{url}/extend", json={"hold_seconds": 60}), 409,
                  "invalid-transition")  # fmt: skip
    assert (await engine.get_order(order["id"])).lines == {"a": 2, "b": 1}
    assert (await engine.stock("a")).on_hand == 8


async def test_without_public_holds_an_anonymous_edit_is_401(client, engine):
    order = await hold(client, a=1)
    url = f"/v1/orders/{order['id']}"
    for response in (await client.patch(url, json={"lines": lines(a=5)}),
                     await client.post(f"{url}/extend", json={"hold_seconds": 60})):  # fmt: skip
        await problem(response, 401, "unauthorized")
    assert (await engine.get_order(order["id"])).lines == {"a": 1}


async def test_the_document_shows_public_holds_on_cart_routes(public, client):
    cases: list[tuple[Any, list[dict[str, list[str]]]]] = [
        (public, [{"bearer": []}, {}]),
        (client, [{"bearer": []}]),
    ]
    for caller, security in cases:
        document = await ok(await caller.get("/openapi.json"))
        assert document["paths"]["/v1/orders/{order_id}"]["patch"]["security"] == security
        assert document["paths"]["/v1/orders/{order_id}/extend"]["post"]["security"] == security
        assert "security" not in document["paths"]["/v1/orders/{order_id}"]["get"]
