"""Roles and keys (design.md §10) through the Quart test client, over a memory engine.

The route table test walks the OpenAPI document, so a route added without a declared role, or
without its place in the document, fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from quart import Response
from quart_trio import QuartTrio

import stockade
from stockade.api.app import ApiSettings, create_app
from stockade.api.auth import RANK, KeyRing, requires, route_access
from stockade.api.keys import ApiKeys
from stockade.persistence.keys import KeyRecord, MemoryKeys, make_key

TOKEN = "merchant-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
HOLD = {"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 60}
PURCHASE = {"lines": [{"sku": "a", "qty": 1}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_app(engine: stockade.Engine, *, public_holds: bool = False) -> QuartTrio:
    return create_app(
        engine, ApiSettings(admin_token=TOKEN, log_requests=False, public_holds=public_holds)
    )


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 100)
        await engine.set_location("b")
        yield engine


@pytest.fixture
async def client(engine) -> AsyncIterator[Any]:
    async with (await make_app(engine)).test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture
async def public(engine) -> AsyncIterator[Any]:
    """A client of an app that takes public holds."""
    async with (await make_app(engine, public_holds=True)).test_app() as test_app:
        yield test_app.test_client()


async def new_key(client, role: str, name: str = "") -> dict[str, Any]:
    made = await client.post("/v1/keys", json={"role": role, "name": name}, headers=ADMIN)
    assert made.status_code == 201, await made.get_data()
    body: dict[str, Any] = await made.get_json()
    return body


async def problem(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.get_json()
    assert body["status"] == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body


# -- every route x every role ---------------------------------------------------------------

BODIES: dict[tuple[str, str], Any] = {
    ("/v1/products/{sku}", "put"): {"on_hand": 100},
    ("/v1/products/{sku}/adjustments", "post"): {"delta": 1},
    ("/v1/orders", "post"): HOLD,
    ("/v1/keys", "post"): {"role": "service", "name": "from the table test"},
    ("/v1/locations/{location_id}", "put"): {"name": "Berlin", "priority": 1, "active": True},
    ("/v1/locations/{location_id}", "patch"): {"priority": 2},
    ("/v1/channels/{channel_id}", "put"): {"locations": ["default"]},
    ("/v1/products/{sku}/locations/{location_id}", "put"): {"on_hand": 100},
    ("/v1/transfers", "post"): {"sku": "a", "qty": 1, "source": "default", "destination": "b"},
    ("/v1/orders/{order_id}", "patch"): {"lines": [{"sku": "a", "qty": 2}]},
    ("/v1/orders/{order_id}/extend", "post"): {"hold_seconds": 120},
    ("/v1/orders/{order_id}/returns", "post"): {"lines": [{"sku": "a", "qty": 1}]},
    ("/v1/webhooks/{webhook_id}", "put"): {
        "url": "http://127.0.0.1:9/hook",
        "secret": "whsec_" + "A" * 32,
    },
    ("/v1/sinks/{sink_id}", "put"): {"url": "redis://127.0.0.1:9/0?stream=stockade-auth-test"},
}
#: What each path parameter names in the table test.
PARAMETERS = {"sku": "a", "location_id": "b", "channel_id": "web", "webhook_id": "w",
              "sink_id": "s"}  # fmt: skip


async def test_every_route_answers_each_role_as_it_declares(client, engine):
    service = (await new_key(client, "service"))["key"]
    merchant = (await new_key(client, "merchant"))["key"]
    callers = {"anyone": {}, "service": bearer(service), "merchant": bearer(merchant)}
    document = await (await client.get("/openapi.json")).get_json()
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            needs = operation["x-stockade-role"]  # every operation declares its role
            for caller, headers in callers.items():
                order = await engine.place_order({"a": 1}, hold_for=60)
                victim = (await new_key(client, "service"))["id"]
                url = path.format(order_id=order.id, key_id=victim, **PARAMETERS)
                response = await client.open(
                    url, method=method.upper(), json=BODIES.get((path, method)), headers=headers
                )
                where = f"{method.upper()} {path} as {caller}"
                if RANK[caller] >= RANK[needs]:
                    assert response.status_code not in (401, 403), where
                    assert response.status_code < 500, where
                else:
                    assert response.status_code == (401 if caller == "anyone" else 403), where
                    await problem(response, response.status_code)
                checked += 1
    assert checked >= 3 * 23


#: design.md §3 and §10: who may call what. A new route is added here too.
ROLES = {
    ("/v1/products", "get"): "anyone",
    ("/v1/products/{sku}", "get"): "anyone",
    ("/v1/products/{sku}", "put"): "merchant",
    ("/v1/products/{sku}/adjustments", "post"): "merchant",
    ("/v1/products/{sku}/rules", "get"): "anyone",
    ("/v1/products/{sku}/rules", "put"): "merchant",
    ("/v1/orders", "post"): "service",
    ("/v1/orders/{order_id}", "get"): "anyone",
    ("/v1/orders/{order_id}/confirm", "post"): "service",
    ("/v1/orders/{order_id}/cancel", "post"): "service",
    ("/v1/orders/{order_id}/returns", "post"): "service",
    ("/v1/keys", "post"): "merchant",
    ("/v1/keys", "get"): "merchant",
    ("/v1/keys/{key_id}", "delete"): "merchant",
    # design.md §7: locations, channels, stock per location, transfers
    ("/v1/locations", "get"): "anyone",
    ("/v1/locations/{location_id}", "put"): "merchant",
    ("/v1/locations/{location_id}", "patch"): "merchant",
    ("/v1/channels", "get"): "anyone",
    ("/v1/channels/{channel_id}", "put"): "merchant",
    ("/v1/products/{sku}/locations", "get"): "anyone",
    ("/v1/products/{sku}/locations/{location_id}", "put"): "merchant",
    ("/v1/transfers", "post"): "merchant",
    # design.md §8: carts (anonymous callers too, for a hold, with --public-holds)
    ("/v1/orders/{order_id}", "patch"): "service",
    ("/v1/orders/{order_id}/extend", "post"): "service",
    # design.md §11: history and the books
    ("/v1/orders", "get"): "service",
    ("/v1/products/{sku}/movements", "get"): "merchant",
    ("/v1/admin/check", "get"): "merchant",
    ("/healthz", "get"): "anyone",
    ("/readyz", "get"): "anyone",
    ("/metrics", "get"): "anyone",
    ("/openapi.json", "get"): "anyone",
    ("/docs", "get"): "anyone",
    ("/v1/events", "get"): "service",
    ("/v1/events/stream", "get"): "service",
    ("/v1/products/{sku}/stream", "get"): "anyone",
    ("/v1/webhooks", "get"): "merchant",
    ("/v1/webhooks/{webhook_id}", "put"): "merchant",
    ("/v1/webhooks/{webhook_id}", "get"): "merchant",
    ("/v1/webhooks/{webhook_id}", "delete"): "merchant",
    ("/v1/sinks", "get"): "merchant",
    ("/v1/sinks/{sink_id}", "put"): "merchant",
    ("/v1/sinks/{sink_id}", "get"): "merchant",
    ("/v1/sinks/{sink_id}", "delete"): "merchant",
}


async def test_the_document_lists_every_route_with_the_role_it_declares(client):
    app = client.app
    declared = route_access(app)
    document = await (await client.get("/openapi.json")).get_json()
    documented = {
        (path, method): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert set(documented) == set(declared)  # no route undocumented, nothing documented unrouted
    assert {where: access.role for where, access in declared.items()} == ROLES
    for where, access in declared.items():
        operation = documented[where]
        assert operation["x-stockade-role"] == access.role, where
        if access.role == "anyone":
            assert "security" not in operation, where
        else:
            assert operation["security"] == [{"bearer": []}], where
            assert {"401", "403"} <= set(operation["responses"]), where


async def test_a_route_that_declares_no_role_is_refused_at_build_time():
    app = QuartTrio(__name__, static_folder=None)

    @app.get("/declared")
    @requires("anyone")
    async def declared() -> Response:
        return Response("")  # pragma: no cover

    @app.get("/forgotten")
    async def forgotten() -> Response:
        return Response("")  # pragma: no cover

    with pytest.raises(RuntimeError, match="/forgotten"):
        route_access(app)


# -- keys over HTTP -------------------------------------------------------------------------


async def test_a_key_made_over_http_works_at_once_and_revoking_stops_it_at_once(client):
    made = await client.post("/v1/keys", json={"role": "service", "name": "shop"}, headers=ADMIN)
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    shown = await made.get_json()
    key = shown["key"]
    assert key.startswith(f"sk_{shown['id']}_") and len(key) > 40
    assert shown["role"] == "service" and shown["name"] == "shop" and shown["revoked_at"] is None
    assert (await client.post("/v1/orders", json=PURCHASE, headers=bearer(key))).status_code == 201

    listing = await client.get("/v1/keys", headers=ADMIN)
    raw = await listing.get_data(as_text=True)
    assert key.split("_", 2)[2] not in raw  # the secret is never shown again
    (item,) = (await listing.get_json())["items"]
    assert set(item) == {"id", "name", "role", "created_at", "revoked_at"}

    revoked = await client.delete(f"/v1/keys/{shown['id']}", headers=ADMIN)
    assert (await revoked.get_json())["revoked_at"] is not None
    await problem(await client.post("/v1/orders", json=PURCHASE, headers=bearer(key)), 401)
    again = await client.delete(f"/v1/keys/{shown['id']}", headers=ADMIN)  # idempotent
    assert again.status_code == 200
    assert (await again.get_json())["revoked_at"] == (await revoked.get_json())["revoked_at"]
    await problem(await client.delete("/v1/keys/nope", headers=ADMIN), 404)


async def test_keys_cannot_be_managed_with_a_service_key(client):
    service = (await new_key(client, "service"))["key"]
    await problem(
        await client.post("/v1/keys", json={"role": "merchant"}, headers=bearer(service)), 403
    )
    await problem(await client.get("/v1/keys", headers=bearer(service)), 403)
    merchant = (await new_key(client, "merchant"))["key"]  # a merchant key from the table
    assert (await client.get("/v1/keys", headers=bearer(merchant))).status_code == 200


@pytest.mark.parametrize(
    "body", [{"role": "admin"}, {"name": "x"}, {"role": "service", "name": "x" * 201},
             {"role": "service", "extra": 1}, {"role": "service", "name": "tab\there"}],
)  # fmt: skip
async def test_a_bad_key_request_is_422_and_makes_nothing(client, body):
    await problem(await client.post("/v1/keys", json=body, headers=ADMIN), 422)
    assert (await (await client.get("/v1/keys", headers=ADMIN)).get_json())["items"] == []


async def test_what_is_not_a_valid_key_is_401(client):
    shown = await new_key(client, "merchant")
    key_id, secret = shown["id"], shown["key"].split("_", 2)[2]
    other = "sk_" + "0" * 16 + "_" + secret
    for header in [
        f"Bearer sk_{key_id}_{secret[:-1]}x",  # the right id, a wrong secret
        f"Bearer {other}",  # an unknown id
        f"Bearer sk_{key_id}",  # no secret
        f"Basic {shown['key']}",  # another scheme
        "Bearer",
        f"Bearer {TOKEN}x",
    ]:
        response = await client.put("/v1/products/b", json={"on_hand": 1},
                                    headers={"Authorization": header})  # fmt: skip
        body = await problem(response, 401)
        assert "not valid" in body["detail"], header
    lower = await client.put("/v1/products/b", json={"on_hand": 1},
                             headers={"Authorization": f"bearer  {shown['key']} "})  # fmt: skip
    assert lower.status_code == 201  # the scheme is case-insensitive, spaces do not matter


# -- public holds ---------------------------------------------------------------------------


async def test_without_public_holds_anonymous_callers_cannot_hold(client, engine):
    await problem(await client.post("/v1/orders", json=HOLD), 401)
    assert (await engine.stock("a")).available == 100


async def test_public_holds_let_anonymous_callers_hold_and_release_only(public, engine):
    held = await public.post("/v1/orders", json=HOLD)
    assert held.status_code == 201
    order_id = (await held.get_json())["id"]
    assert (await engine.stock("a")).reserved == 1
    body = await problem(await public.post("/v1/orders", json=PURCHASE), 401)
    assert "holds only" in body["detail"]
    await problem(await public.post(f"/v1/orders/{order_id}/confirm"), 401)
    cancelled = await public.post(f"/v1/orders/{order_id}/cancel")
    assert (await cancelled.get_json())["status"] == "cancelled"
    assert (await public.post(f"/v1/orders/{order_id}/cancel")).status_code == 200  # idempotent
    assert (await engine.stock("a")).available == 100
    await problem(await public.post("/v1/orders", json=HOLD, headers=bearer("nope")), 401)


async def test_public_holds_never_return_a_sale(public, engine):
    held = await (await public.post("/v1/orders", json=HOLD)).get_json()
    confirmed = await public.post(f"/v1/orders/{held['id']}/confirm", headers=ADMIN)
    assert confirmed.status_code == 200
    body = await problem(await public.post(f"/v1/orders/{held['id']}/cancel"), 401)
    assert "return" in body["detail"]
    assert (await engine.get_order(held["id"])).status == "confirmed"
    assert (await engine.stock("a")).on_hand == 99
    returned = await public.post(f"/v1/orders/{held['id']}/cancel", headers=ADMIN)
    assert (await returned.get_json())["status"] == "cancelled"


async def test_the_document_shows_public_holds(public, client):
    document = await (await public.get("/openapi.json")).get_json()
    assert document["paths"]["/v1/orders"]["post"]["security"] == [{"bearer": []}, {}]
    cancel = document["paths"]["/v1/orders/{order_id}/cancel"]["post"]
    assert cancel["security"] == [{"bearer": []}, {}]
    confirm = document["paths"]["/v1/orders/{order_id}/confirm"]["post"]
    assert confirm["security"] == [{"bearer": []}]
    closed = await (await client.get("/openapi.json")).get_json()
    assert closed["paths"]["/v1/orders"]["post"]["security"] == [{"bearer": []}]


# -- the guard and its refresh --------------------------------------------------------------


def test_the_guard_knows_live_keys_and_the_admin_token_only():
    record, key = make_key("service", "", 1.0)
    revoked, old = make_key("merchant", "", 1.0)
    guard = KeyRing("admin")
    guard.replace([record, msgspec.structs.replace(revoked, revoked_at=2.0)])
    assert guard.role_of(key.encode()) == "service"
    assert guard.role_of(old.encode()) is None
    assert guard.role_of(b"admin") == "merchant"
    assert KeyRing("").role_of(b"") is None  # no admin token: nothing is one


async def test_keys_made_or_revoked_elsewhere_are_seen_within_the_refresh(autojump_clock):
    table = MemoryKeys()  # written behind the server's back, as the CLI does
    keys = ApiKeys(table, KeyRing(TOKEN), refresh_s=1.0)
    record, key = make_key("service", "cli", 0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(keys.run)
        await table.add(record)
        assert keys.guard.role_of(key.encode()) is None  # not yet read
        await trio.sleep(1.01)
        assert keys.guard.role_of(key.encode()) == "service"
        await table.revoke(record.id, 1.0)
        await trio.sleep(1.01)
        assert keys.guard.role_of(key.encode()) is None
        nursery.cancel_scope.cancel()


class SlowKeys(MemoryKeys):
    """A table whose listings wait for :attr:`gate` after reading: a slow database."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None

    async def keys(self) -> list[KeyRecord]:
        records = await super().keys()
        if self.gate is not None:
            await self.gate.wait()
        return records


async def test_a_refresh_in_flight_never_brings_back_a_revoked_key():
    table = SlowKeys()
    keys = ApiKeys(table, KeyRing(TOKEN))
    record, key = await keys.create("service", "")
    table.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keys.refresh)  # reads the key as live, then waits
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(keys.revoke, record.id)
        await trio.testing.wait_all_tasks_blocked()
        table.gate.set()
    assert keys.guard.role_of(key.encode()) is None
