"""Locations, channels, transfers (design.md §7) and carts (§8) against the real server on
SQLite: orders naming a location or a channel take the ASGI fast path, and what the shop set up
is still there after a restart."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import Server
from tests.integration.test_server import ADMIN, TOKEN


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path, TOKEN)
    server.start()
    yield server
    server.kill()


def call(client: httpx.Client, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
    response = client.request(method, url, **kwargs)
    assert response.status_code == status, (method, url, response.text)
    return response.json()


def levels(client: httpx.Client, sku: str) -> dict[str, tuple[int, int, int]]:
    page = call(client, "GET", f"/v1/products/{sku}/locations")
    return {i["location"]: (i["on_hand"], i["reserved"], i["available"]) for i in page["items"]}


def test_a_two_warehouse_shop_over_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=ADMIN) as client:
        call(client, "PUT", "/v1/locations/berlin", 201, json={"name": "Berlin", "priority": 1,
                                                              "active": True})  # fmt: skip
        call(client, "PUT", "/v1/locations/paris", 201, json={"name": "Paris", "priority": 2,
                                                            "active": True})  # fmt: skip
        call(client, "PUT", "/v1/channels/fr", 201, json={"locations": ["paris"]})
        call(client, "PUT", "/v1/products/tee/locations/berlin", 201, json={"on_hand": 5})
        call(client, "PUT", "/v1/products/tee/locations/paris", json={"on_hand": 3})

        hold = {"lines": [{"sku": "tee", "qty": 6}], "hold_seconds": 600}
        split = call(client, "POST", "/v1/orders", 201, json=hold)
        assert split["allocations"] == {"tee": {"berlin": 5, "paris": 1}}
        fr = call(client, "POST", "/v1/orders", 201,
                  json={"lines": [{"sku": "tee", "qty": 1}], "channel": "fr"})  # fmt: skip
        assert fr["allocations"] == {"tee": {"paris": 1}} and fr["status"] == "confirmed"
        short = client.post("/v1/orders", json={"lines": [{"sku": "tee", "qty": 2}],
                                                "location": "paris"})  # fmt: skip
        assert short.status_code == 409
        assert short.json()["shortages"] == [{"sku": "tee", "requested": 2, "available": 1}]
        unknown = client.post("/v1/orders", json={"lines": [{"sku": "tee", "qty": 1}],
                                                  "channel": "de"})  # fmt: skip
        assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/unknown-channel"

        call(client, "POST", f"/v1/orders/{split['id']}/cancel")
        moved = call(client, "POST", "/v1/transfers", json={
            "sku": "tee", "qty": 4, "source": "berlin", "destination": "paris"})  # fmt: skip
        assert [(i["location"], i["on_hand"]) for i in moved["items"]] == [
            ("berlin", 1), ("paris", 6),
        ]  # fmt: skip
        call(client, "PUT", "/v1/locations/berlin", json={"name": "Berlin", "priority": 1,
                                                          "active": False})  # fmt: skip
        at_paris = {"lines": [{"sku": "tee", "qty": 2}], "hold_seconds": 600, "location": "paris"}
        pinned = call(client, "POST", "/v1/orders", 201, json=at_paris)
        expected = {"berlin": (1, 0, 0), "paris": (6, 2, 4)}
        assert levels(client, "tee") == expected
        assert call(client, "GET", "/v1/products/tee") == {
            "sku": "tee", "on_hand": 7, "reserved": 2, "available": 4, "on_sale": True,
        }  # fmt: skip
        metrics = client.get("/metrics").text
        assert "stockade_transfers_total 1.0" in metrics and "stockade_locations 3.0" in metrics

    server.stop(signal.SIGKILL)  # everything acknowledged is durable
    server.start()
    with httpx.Client(base_url=server.url, headers=ADMIN) as client:
        assert [loc["id"] for loc in call(client, "GET", "/v1/locations")["items"]] == [
            "default", "berlin", "paris",
        ]  # fmt: skip
        channels = call(client, "GET", "/v1/channels")["items"]
        assert channels == [{"id": "fr", "locations": ["paris"]}]
        assert levels(client, "tee") == expected
        fr_view = call(client, "GET", "/v1/products/tee", params={"channel": "fr"})
        assert fr_view == {
            "sku": "tee",
            "on_hand": 6,
            "reserved": 2,
            "available": 4,
            "on_sale": True,
        }
        confirmed = call(client, "POST", f"/v1/orders/{pinned['id']}/confirm")
        assert confirmed["allocations"] == {"tee": {"paris": 2}}
        assert levels(client, "tee") == {"berlin": (1, 0, 0), "paris": (4, 0, 4)}
    assert server.stop() == 0


def test_a_cart_edited_and_extended_over_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=ADMIN) as client:
        for sku in ("a", "b"):
            call(client, "PUT", f"/v1/products/{sku}", 201, json={"on_hand": 10})
        order = call(client, "POST", "/v1/orders", 201, headers={"Idempotency-Key": "cart-9"},
                     json={"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 60})  # fmt: skip
        url = f"/v1/orders/{order['id']}"
        edit = {"lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}
        edited = call(client, "PATCH", url, json=edit, headers={"Idempotency-Key": "edit-1"})
        assert edited["lines"] == {"a": 2, "b": 3}
        again = call(client, "PATCH", url, json=edit, headers={"Idempotency-Key": "edit-1"})
        assert again == edited
        other = client.patch(url, json={"lines": [{"sku": "a", "qty": 9}]},
                             headers={"Idempotency-Key": "edit-1"})  # fmt: skip
        assert other.status_code == 409
        assert other.json()["type"] == "/problems/idempotency-conflict"
        short = client.patch(url, json={"lines": [{"sku": "a", "qty": 11}]})
        assert short.status_code == 409 and short.json()["type"] == "/problems/out-of-stock"
        ext = {"Idempotency-Key": "ext-1"}
        extended = call(client, "POST", f"{url}/extend", json={"hold_seconds": 3600}, headers=ext)
        assert extended["expires_at"] > order["expires_at"]
        assert call(client, "POST", f"{url}/extend", json={"hold_seconds": 3600},
                    headers=ext) == extended  # fmt: skip
        assert [call(client, "GET", f"/v1/products/{s}")["reserved"] for s in "ab"] == [2, 3]

    server.stop(signal.SIGKILL)
    server.start()
    with httpx.Client(base_url=server.url, headers=ADMIN) as client:
        # the edit, the extension and both keys survived: retries still apply once
        assert call(client, "GET", url) == extended
        assert call(client, "PATCH", url, json=edit, headers={"Idempotency-Key": "edit-1"}) == (
            extended
        )
        assert call(client, "POST", f"{url}/extend", json={"hold_seconds": 3600},
                    headers={"Idempotency-Key": "ext-1"}) == extended  # fmt: skip
        replayed = call(client, "POST", "/v1/orders", 201, headers={"Idempotency-Key": "cart-9"},
                        json={"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 60})  # fmt: skip
        assert replayed == extended  # the placement's retry answers the cart as it is now
        confirmed = call(client, "POST", f"{url}/confirm")
        assert confirmed["lines"] == {"a": 2, "b": 3}
        assert [call(client, "GET", f"/v1/products/{s}")["on_hand"] for s in "ab"] == [8, 7]
        metrics = client.get("/metrics").text
        assert "stockade_orders_replayed_total" in metrics
    assert server.stop() == 0


def test_public_holds_edit_and_extend_their_own_hold(tmp_path: Path) -> None:
    server = Server(tmp_path, TOKEN, args=("--public-holds",))
    server.start()
    try:
        with httpx.Client(base_url=server.url) as anonymous:
            call(anonymous, "PUT", "/v1/products/a", 201, json={"on_hand": 5}, headers=ADMIN)
            mine = call(anonymous, "POST", "/v1/orders", 201,
                        json={"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 60})  # fmt: skip
            url = f"/v1/orders/{mine['id']}"
            edited = call(anonymous, "PATCH", url, json={"lines": [{"sku": "a", "qty": 3}]})
            assert edited["lines"] == {"a": 3}
            extended = call(anonymous, "POST", f"{url}/extend", json={"hold_seconds": 600})
            assert extended["expires_at"] > mine["expires_at"]
            call(anonymous, "POST", f"{url}/confirm", headers=ADMIN)
            late = anonymous.patch(url, json={"lines": [{"sku": "a", "qty": 1}]})
            assert late.status_code == 409  # a sale is no hold: nothing to edit
            assert call(anonymous, "GET", "/v1/products/a") == {
                "sku": "a", "on_hand": 2, "reserved": 0, "available": 2, "on_sale": True,
            }  # fmt: skip
    finally:
        server.kill()
