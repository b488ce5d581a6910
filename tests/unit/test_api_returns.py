"""Late payments and returns over HTTP (design.md §13): ``POST /v1/orders/{id}/confirm`` with
``{"late": true}`` and ``POST /v1/orders/{id}/returns``, through quart's test client over a
memory engine on trio's mock clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import stockade
from stockade.api.app import ApiSettings, create_app
from tests.answers import ok, problem

TOKEN = "merchant-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def lines(**qty: int) -> list[dict[str, Any]]:
    return [{"sku": sku, "qty": n} for sku, n in qty.items()]


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 10)
        await engine.set_stock("b", 10)
        yield engine


@pytest.fixture
async def client(engine) -> AsyncIterator[Any]:
    settings = ApiSettings(admin_token=TOKEN, log_requests=False, public_holds=True)
    async with create_app(engine, settings).test_app() as test_app:
        yield test_app.test_client()


async def place(client, hold_seconds: int | None = None, **qty: int) -> dict[str, Any]:
    body = {"lines": lines(**qty), "hold_seconds": hold_seconds}
    answer = await client.post("/v1/orders", json=body, headers=ADMIN)
    order: dict[str, Any] = await ok(answer, 201)
    return order


async def test_a_late_payment_over_http(client, engine, autojump_clock):
    order = await place(client, hold_seconds=60, a=4)
    url = f"/v1/orders/{order['id']}/confirm"
    await trio.sleep(61)
    await problem(await client.post(url, headers=ADMIN), 409, "invalid-transition")
    await problem(await client.post(url, json={"late": False}, headers=ADMIN), 409,
                  "invalid-transition")  # fmt: skip
    await engine.place_order({"a": 8})  # someone else took most of it meanwhile
    short = await problem(await client.post(url, json={"late": True}, headers=ADMIN), 409,
                          "out-of-stock")  # fmt: skip
    assert short["shortages"] == [{"sku": "a", "requested": 4, "available": 2}]
    assert (await engine.get_order(order["id"])).status == "expired"
    await engine.adjust_stock("a", 2)
    confirmed = await ok(await client.post(url, json={"late": True}, headers=ADMIN))
    assert confirmed["status"] == "confirmed" and confirmed["allocations"] == {"a": {"default": 4}}
    assert (await engine.stock("a")).on_hand == 0
    # an empty body is still the plain confirm (idempotent here)
    again = await client.post(url, headers={**ADMIN, "Content-Type": "application/json"})
    assert (await ok(again)) == confirmed


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"late": "yes"}', "application/json", 422),
        (b'{"late": true, "extra": 1}', "application/json", 422),
        (b"{late", "application/json", 400),
        (b'{"late": true}', "text/plain", 415),
    ],
)
async def test_bad_confirm_bodies_are_refused(client, engine, body, content_type, status):
    order = await place(client, hold_seconds=60, a=1)
    answer = await client.post(f"/v1/orders/{order['id']}/confirm", data=body,
                               headers={**ADMIN, "Content-Type": content_type})  # fmt: skip
    assert answer.status_code == status, await answer.get_data()
    assert (await engine.get_order(order["id"])).status == "reserved"


async def test_returns_over_http_restock_write_off_and_replay(client, engine):
    order = await place(client, a=3, b=1)
    url = f"/v1/orders/{order['id']}/returns"
    keyed = {**ADMIN, "Idempotency-Key": "rma-7"}
    one = await ok(await client.post(url, json={"lines": lines(a=1)}, headers=keyed))
    assert (one["status"], one["returned"], one["written_off"]) == ("confirmed", {"a": 1}, {})
    assert (await engine.stock("a")).on_hand == 8
    assert await ok(await client.post(url, json={"lines": lines(a=1)}, headers=keyed)) == one
    assert (await engine.stock("a")).on_hand == 8  # the retry moved nothing
    await problem(await client.post(url, json={"lines": lines(a=2)}, headers=keyed), 409,
                  "idempotency-conflict")  # fmt: skip
    lost = {"lines": lines(a=1), "restock": False}
    two = await ok(await client.post(url, json=lost, headers=ADMIN))
    assert (two["returned"], two["written_off"]) == ({"a": 2}, {"a": 1})
    assert (await engine.stock("a")).on_hand == 8
    over = await problem(await client.post(url, json={"lines": lines(a=2)}, headers=ADMIN), 409,
                         "return-conflict")  # fmt: skip
    assert "not returned yet" in over["detail"]
    await problem(await client.post(url, json={"lines": lines(c=1)}, headers=ADMIN), 409,
                  "return-conflict")  # fmt: skip
    last = await ok(await client.post(url, json={"lines": lines(a=1, b=1)}, headers=ADMIN))
    assert last["status"] == "cancelled" and last["returned"] == {"a": 3, "b": 1}
    assert (await engine.stock("a")).on_hand == 9 and (await engine.stock("b")).on_hand == 10
    await problem(await client.post(url, json={"lines": lines(a=1)}, headers=ADMIN), 409,
                  "invalid-transition")  # fmt: skip


async def test_returns_need_a_key_and_a_confirmed_order(client, engine):
    held = await place(client, hold_seconds=60, a=1)
    url = f"/v1/orders/{held['id']}/returns"
    body = {"lines": lines(a=1)}
    assert (await client.post(url, json=body)).status_code == 401  # never anonymous
    await problem(await client.post(url, json=body, headers=ADMIN), 409, "invalid-transition")
    await problem(await client.post("/v1/orders/nope/returns", json=body, headers=ADMIN), 404,
                  "order-not-found")  # fmt: skip
    bad: dict[str, Any]
    for bad in ({"lines": []}, {"lines": lines(a=0)}, {"lines": lines(a=1), "restock": "no"},
                {"lines": lines(a=1), "other": 1}, {}):  # fmt: skip
        await problem(await client.post(url, json=bad, headers=ADMIN), 422, "invalid-request")
    assert (await client.post(url, data=b"{}", headers=ADMIN)).status_code == 415


async def test_the_document_describes_late_confirms_and_returns(client):
    document = await ok(await client.get("/openapi.json"))
    confirm = document["paths"]["/v1/orders/{order_id}/confirm"]["post"]
    assert confirm["requestBody"]["required"] is False
    assert {"409", "422", "415"} <= set(confirm["responses"])
    returns = document["paths"]["/v1/orders/{order_id}/returns"]["post"]
    assert returns["operationId"] == "returnUnits"
    assert [p["name"] for p in returns["parameters"]] == ["order_id", "Idempotency-Key"]
    schema = document["components"]["schemas"]["ReturnUnits"]
    assert set(schema["properties"]) == {"lines", "restock"}
    order = document["components"]["schemas"]["Order"]["properties"]
    assert {"returned", "written_off"} <= set(order)
