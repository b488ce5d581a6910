"""The real server, started as a subprocess on SQLite, driven over HTTP on loopback."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import httpx
import pytest
import trio

from bench.server import Server
from stockade.api.server import GC_YOUNG_THRESHOLD

TOKEN = "integration-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    server = Server(tmp_path, TOKEN)
    server.start()
    yield server
    server.kill()


async def test_last_unit_rush_over_http(server):
    limits = httpx.Limits(max_connections=400)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        put = await client.put("/v1/products/hot", json={"on_hand": 100}, headers=ADMIN)
        assert put.status_code == 201
        codes: list[int] = []

        async def buyer():
            r = await client.post(
                "/v1/orders", json={"lines": [{"sku": "hot", "qty": 1}]}, headers=ADMIN
            )
            codes.append(r.status_code)

        async with trio.open_nursery() as nursery:
            for _ in range(400):
                nursery.start_soon(buyer)
        assert sorted(codes) == [201] * 100 + [409] * 300
        stock = (await client.get("/v1/products/hot")).json()
        assert stock == {"sku": "hot", "on_hand": 0, "reserved": 0, "available": 0}
    assert server.stop() == 0  # SIGTERM: a clean exit


def test_server_tunes_its_gc_once_listening(server):
    lines = [json.loads(line) for line in server.log.read_text().splitlines()]
    (listening,) = [line for line in lines if line.get("event") == "listening"]
    assert listening["gc_threshold"][0] == GC_YOUNG_THRESHOLD
    assert listening["gc_frozen"] > 0


async def test_auth_and_bad_input_change_nothing(server):
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.put("/v1/products/a", json={"on_hand": 5})).status_code == 401
        wrong = {"Authorization": "Bearer wrong"}  # not a key at all: 401 (design.md §10)
        assert (
            await client.put("/v1/products/a", json={"on_hand": 5}, headers=wrong)
        ).status_code == 401
        for _ in range(5):  # refusals on one keep-alive connection leave it usable
            assert (await client.post("/v1/orders", json={"lines": []})).status_code == 401
        assert (
            await client.put("/v1/products/a", json={"on_hand": 5}, headers=ADMIN)
        ).status_code == 201
        bodies: list[object] = [
            [],
            {"lines": []},
            {"lines": [{"sku": "a", "qty": 0}]},
            "x" * 99_999,
        ]
        for body in bodies:
            r = await client.post("/v1/orders", json=body, headers=ADMIN)
            assert 400 <= r.status_code < 500, (body, r.status_code)
        r = await client.post(
            "/v1/orders", content=b"{", headers={**ADMIN, "content-type": "application/json"}
        )
        assert r.status_code == 400
        assert (await client.get("/v1/products/a")).json()["available"] == 5


async def test_acknowledged_orders_survive_kill_9(server):
    async with httpx.AsyncClient(base_url=server.url) as client:
        await client.put("/v1/products/a", json={"on_hand": 50}, headers=ADMIN)
        acked = []
        for n in range(20):
            r = await client.post(
                "/v1/orders",
                json={"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 600 if n % 2 else None},
                headers={**ADMIN, "Idempotency-Key": f"k{n}"},
            )
            assert r.status_code == 201
            acked.append(r.json())
    server.stop(signal.SIGKILL)
    server.start()
    async with httpx.AsyncClient(base_url=server.url) as client:
        for order in acked:
            assert (await client.get(f"/v1/orders/{order['id']}")).json() == order
        replay = await client.post(
            "/v1/orders",
            json={"lines": [{"sku": "a", "qty": 1}]},
            headers={**ADMIN, "Idempotency-Key": "k0"},
        )
        assert replay.json()["id"] == acked[0]["id"]
        assert (await client.get("/v1/products/a")).json() == {
            "sku": "a", "on_hand": 40, "reserved": 10, "available": 30,
        }  # fmt: skip
