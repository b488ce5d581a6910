"""The sale's rules over HTTP (design.md §13), through quart's test client over a memory engine
on trio's mock clock: PUT/GET /v1/products/{sku}/rules, on_sale, orders' customer, reference and
metadata, GET /v1/orders?customer=, limit-exceeded and not-on-sale, and a rush of one
customer's parallel requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import trio

import stockade
from stockade.api.app import ApiSettings, create_app
from stockade.api.bounds import HoldBounds
from tests.answers import ok, problem

TOKEN = "merchant-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_000_000_000.0


def iso(offset_s: float) -> str:
    return datetime.fromtimestamp(T0 + offset_s, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(None, wall_clock=lambda: T0 + trio.current_time()) as engine:
        await engine.set_stock("a", 50)
        await engine.set_stock("b", 50)
        yield engine


@pytest.fixture
async def client(engine) -> AsyncIterator[Any]:
    # The anonymous bounds (tests/unit/test_api_bounds.py) far out of the way: every request
    # here comes from one address, and what is under test is the customer's limit.
    loose = HoldBounds(max_open=1000, rate=1000.0, burst=1000)
    settings = ApiSettings(admin_token=TOKEN, log_requests=False, public_holds=True,
                           bounds=loose)  # fmt: skip
    async with create_app(engine, settings).test_app() as test_app:
        yield test_app.test_client()


def order(customer: str | None = None, hold: int | None = None, **qty: int) -> dict[str, Any]:
    body: dict[str, Any] = {"lines": [{"sku": s, "qty": n} for s, n in qty.items()]}
    if hold is not None:
        body["hold_seconds"] = hold
    if customer is not None:
        body["customer"] = customer
    return body


async def test_rules_are_put_whole_and_read_by_anyone(client, autojump_clock):
    rules = {"per_order": 2, "per_customer": 3, "opens_at": iso(60), "closes_at": iso(3600),
             "low_stock_at": 5}  # fmt: skip
    kept = await ok(await client.put("/v1/products/a/rules", json=rules, headers=ADMIN))
    assert kept["sku"] == "a" and kept["per_customer"] == 3
    assert kept["opens_at"] == iso(60) and kept["counting_since"] == iso(0)
    assert await ok(await client.get("/v1/products/a/rules")) == kept
    product = await ok(await client.get("/v1/products/a"))
    assert product == {"sku": "a", "on_hand": 50, "reserved": 0, "available": 50,
                       "on_sale": False}  # fmt: skip
    refused = await problem(await client.post("/v1/orders", json=order("ann", a=1),
                                              headers=ADMIN), 409, "not-on-sale")  # fmt: skip
    assert (refused["sku"], refused["opens_at"], refused["closes_at"]) == (
        "a", iso(60), iso(3600),
    )  # fmt: skip
    await trio.sleep(60)
    assert (await ok(await client.get("/v1/products/a")))["on_sale"] is True
    # whole replacement: what is left out is gone
    kept = await ok(await client.put("/v1/products/a/rules", json={"per_order": 1},
                                     headers=ADMIN))  # fmt: skip
    assert kept["per_customer"] is None and kept["opens_at"] is None
    none = await ok(await client.put("/v1/products/a/rules", json={}, headers=ADMIN))
    assert none == {"sku": "a", "per_order": None, "per_customer": None, "opens_at": None,
                    "closes_at": None, "low_stock_at": None, "counting_since": None}  # fmt: skip


async def test_bad_rules_are_refused(client, engine, autojump_clock):
    await ok(await client.put("/v1/products/a/rules", json={"per_order": 4}, headers=ADMIN))
    for body in (
        {"per_order": 0},
        {"per_customer": -2},
        {"per_order": "2"},
        {"low_stock_at": -1},
        {"opens_at": "2030-01-01T00:00:00"},  # naive
        {"opens_at": "tomorrow"},
        {"opens_at": iso(10), "closes_at": iso(10)},
        {"opens_at": iso(10), "closes_at": iso(5)},
        {"opens_at": "0001-01-01T00:00:00+01:44"},  # before 1970 (UTC)
        {"per_order": 2, "max": 1},
    ):
        await problem(await client.put("/v1/products/a/rules", json=body, headers=ADMIN),
                      422, "invalid-request")  # fmt: skip
    await problem(await client.put("/v1/products/zz/rules", json={}, headers=ADMIN),
                  404, "unknown-product")  # fmt: skip
    await problem(await client.get("/v1/products/zz/rules"), 404, "unknown-product")
    await problem(await client.put("/v1/products/a/rules", json={}), 401, "unauthorized")
    assert (await engine.rules("a")).per_order == 4


async def test_orders_carry_customer_reference_and_metadata(client, autojump_clock):
    body = {**order("ann", a=1), "reference": "#1001", "metadata": {"gift": "yes"}}
    placed = await ok(await client.post("/v1/orders", json=body, headers=ADMIN), 201)
    assert (placed["customer"], placed["reference"], placed["metadata"]) == (
        "ann", "#1001", {"gift": "yes"},
    )  # fmt: skip
    await ok(await client.post("/v1/orders", json=order("bob", a=1), headers=ADMIN), 201)
    page = await ok(await client.get("/v1/orders?customer=ann", headers=ADMIN))
    assert [o["id"] for o in page["items"]] == [placed["id"]]
    for extra in (
        {"customer": ""},
        {"customer": "x" * 129},
        {"reference": "r" * 129},
        {"metadata": {"k": 1}},
        {"metadata": {"k": {"nested": "no"}}},
        {"metadata": {str(i): "v" for i in range(51)}},
        {"metadata": {"k": "v" * 4100}},
    ):
        await problem(await client.post("/v1/orders", json={**order(a=1), **extra},
                                        headers=ADMIN), 422, "invalid-request")  # fmt: skip
    await problem(await client.get("/v1/orders?customer=", headers=ADMIN), 422,
                  "invalid-request")  # fmt: skip


async def test_limits_over_http(client, engine, autojump_clock):
    await ok(await client.put("/v1/products/a/rules", json={"per_customer": 2, "per_order": 2},
                              headers=ADMIN))  # fmt: skip
    refused = await problem(await client.post("/v1/orders", json=order("ann", a=3, b=1),
                                              headers=ADMIN), 409, "limit-exceeded")  # fmt: skip
    assert refused["limits"] == [
        {"sku": "a", "rule": "per_order", "limit": 2, "counted": 0, "requested": 3}
    ]
    held = await ok(await client.post("/v1/orders", json=order("ann", hold=600, a=1, b=1)), 201)
    refused = await problem(await client.post("/v1/orders", json=order("ann", hold=60, a=2)),
                            409, "limit-exceeded")  # fmt: skip
    assert refused["limits"] == [
        {"sku": "a", "rule": "per_customer", "limit": 2, "counted": 1, "requested": 2}
    ]
    edit = {"lines": [{"sku": "a", "qty": 3}]}  # a cart edit: per_order first
    await problem(await client.patch(f"/v1/orders/{held['id']}", json=edit), 409,
                  "limit-exceeded")  # fmt: skip
    refused = await problem(await client.post("/v1/orders", json=order(hold=60, a=1)), 409,
                            "limit-exceeded")  # fmt: skip
    assert refused["limits"] == [
        {"sku": "a", "rule": "customer", "limit": 2, "counted": 0, "requested": 1}
    ]
    assert (await engine.stock("a")).available == 49
    assert (await engine.stock("b")).available == 49


async def test_a_rush_of_one_customers_requests_never_passes_the_limit(client, engine):
    """Many parallel anonymous holds and keyed purchases of one customer, through the whole
    HTTP stack (the fast path included): exactly the limit gets through."""
    await engine.set_rules("a", per_customer=3)
    statuses: list[int] = []

    async def one(i: int) -> None:
        if i % 2:
            response = await client.post("/v1/orders", json=order("ann", hold=600, a=1, b=1))
        else:
            response = await client.post("/v1/orders", json=order("ann", a=1), headers=ADMIN)
        statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for i in range(60):
            nursery.start_soon(one, i)
    assert sorted(set(statuses)) == [201, 409] and statuses.count(201) == 3
    assert (await engine.stock("a")).available == 47
    assert engine._ledgers["a"].rules is not None
    assert engine._ledgers["a"].rules.counts == {"ann": 3}
