"""The real server, started as a subprocess on SQLite, driven over HTTP on loopback; with its
history and the books check read while it takes orders."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import trio

from bench.server import Server
from stockade.api.server import GC_YOUNG_THRESHOLD
from tests.integration.rush import last_unit_rush

TOKEN = "integration-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    server = Server(tmp_path, TOKEN)
    server.start()
    yield server
    server.kill()


async def test_last_unit_rush_over_http(server):
    await last_unit_rush(server.url, ADMIN)
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
            "sku": "a", "on_hand": 40, "reserved": 10, "available": 30, "on_sale": True,
        }  # fmt: skip


def stockade_keys(server: Server, *args: str, database: str | None = None) -> str:
    """``stockade keys ARGS`` as a command, on the server's database: its stdout."""
    database = database or f"sqlite:///{server.database}"
    done = subprocess.run(
        [sys.executable, "-m", "stockade", "keys", *args, "--database", database],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def wait_for_keys(server: Server, since: int, keys: int) -> None:
    """Wait until the server logs, after byte ``since`` of its log, that it now holds ``keys``
    live keys (it re-reads them every second; the deadline only ends a broken run)."""
    wanted = f'"event":"keys_loaded","keys":{keys}'
    deadline = time.monotonic() + 60
    while wanted not in server.log.read_text()[since:]:
        assert time.monotonic() < deadline, f"the server never logged {wanted}"
        time.sleep(0.05)


async def test_keys_made_and_revoked_with_the_cli_reach_the_running_server(server):
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (
            await client.put("/v1/products/a", json={"on_hand": 5}, headers=ADMIN)
        ).status_code == 201
        since = server.log.stat().st_size
        key = stockade_keys(server, "create", "--role", "service", "--name", "shop").strip()
        await trio.to_thread.run_sync(wait_for_keys, server, since, 1)
        service = {"Authorization": f"Bearer {key}"}
        hold = {"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 600}
        placed = await client.post("/v1/orders", json=hold, headers=service)
        assert placed.status_code == 201
        order_id = placed.json()["id"]
        confirmed = await client.post(f"/v1/orders/{order_id}/confirm", headers=service)
        assert confirmed.json()["status"] == "confirmed"
        put = await client.put("/v1/products/a", json={"on_hand": 9}, headers=service)
        assert put.status_code == 403  # a service key is no merchant key
        listed = await client.get("/v1/keys", headers=ADMIN)
        assert [k["name"] for k in listed.json()["items"]] == ["shop"]

        since = server.log.stat().st_size
        stockade_keys(server, "revoke", key.split("_")[1])
        await trio.to_thread.run_sync(wait_for_keys, server, since, 0)
        refused = await client.post("/v1/orders", json=hold, headers=service)
        assert refused.status_code == 401
        assert (await client.get("/v1/products/a")).json()["on_hand"] == 4
    assert server.stop() == 0


async def test_a_public_holds_server_lets_anonymous_callers_hold_and_cancel_only(tmp_path):
    server = Server(tmp_path, TOKEN, args=("--public-holds",))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            await client.put("/v1/products/a", json={"on_hand": 5}, headers=ADMIN)
            hold = {"lines": [{"sku": "a", "qty": 1}], "hold_seconds": 600}
            mine = (await client.post("/v1/orders", json=hold)).json()
            assert mine["status"] == "reserved"
            bought = await client.post("/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]})
            assert bought.status_code == 401
            confirm = await client.post(f"/v1/orders/{mine['id']}/confirm")
            assert confirm.status_code == 401
            cancelled = await client.post(f"/v1/orders/{mine['id']}/cancel")
            assert cancelled.json()["status"] == "cancelled"
            paid = (await client.post("/v1/orders", json=hold)).json()
            await client.post(f"/v1/orders/{paid['id']}/confirm", headers=ADMIN)
            returned = await client.post(f"/v1/orders/{paid['id']}/cancel")
            assert returned.status_code == 401  # a return always needs a key
            assert (await client.get("/v1/products/a")).json() == {
                "sku": "a", "on_hand": 4, "reserved": 0, "available": 4, "on_sale": True,
            }  # fmt: skip
    finally:
        server.stop()


async def test_public_holds_come_from_the_environment_too(tmp_path):
    server = Server(tmp_path, TOKEN, env={"STOCKADE_PUBLIC_HOLDS": "1"})
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            document = (await client.get("/openapi.json")).json()
            assert document["paths"]["/v1/orders"]["post"]["security"] == [{"bearer": []}, {}]
    finally:
        server.stop()


async def test_a_server_on_postgresql_sees_keys_made_and_revoked_with_the_cli(
    tmp_path, postgres_dsn
):
    server = Server(tmp_path, TOKEN, args=("--database", postgres_dsn))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            await client.put("/v1/products/a", json={"on_hand": 5}, headers=ADMIN)
            since = server.log.stat().st_size
            key = stockade_keys(server, "create", "--role", "service", database=postgres_dsn)
            await trio.to_thread.run_sync(wait_for_keys, server, since, 1)
            service = {"Authorization": f"Bearer {key.strip()}"}
            order = {"lines": [{"sku": "a", "qty": 1}]}
            assert (await client.post("/v1/orders", json=order, headers=service)).status_code == 201
            since = server.log.stat().st_size
            stockade_keys(server, "revoke", key.split("_")[1], database=postgres_dsn)
            await trio.to_thread.run_sync(wait_for_keys, server, since, 0)
            assert (await client.post("/v1/orders", json=order, headers=service)).status_code == 401
    finally:
        assert server.stop() == 0


async def test_the_check_reads_the_live_store_while_orders_come_in(server):
    async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=30) as client:
        assert (await client.put("/v1/products/a", json={"on_hand": 500})).status_code == 201
        statuses: list[int] = []

        async def buyer(n: int) -> None:
            hold = {"hold_seconds": 600} if n % 2 else {}
            for _ in range(10):
                placed = await client.post(
                    "/v1/orders", json={"lines": [{"sku": "a", "qty": 1}], **hold}
                )
                statuses.append(placed.status_code)

        checks = []
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(buyer, n)
            for _ in range(3):  # beside the orders: each reads one committed state
                checks.append((await client.get("/v1/admin/check")).json())
        assert statuses == [201] * 200
        assert all(check["balanced"] for check in checks), checks
        final = (await client.get("/v1/admin/check")).json()
        assert final["balanced"] and final["orders"] == 200 and final["open_holds"] == 100
        listed = (
            await client.get("/v1/orders", params={"status": "reserved", "limit": 1000})
        ).json()
        assert len(listed["items"]) == 100 and listed["next_after"] is None
        moves = (await client.get("/v1/products/a/movements", params={"limit": 1000})).json()
        assert len(moves["items"]) == 201 and moves["items"][0]["kind"] == "set"

        conn = sqlite3.connect(server.database, timeout=10)  # a hand edit, server running
        with conn:
            conn.execute("UPDATE stock SET on_hand = on_hand - 1")
        conn.close()
        found = (await client.get("/v1/admin/check")).json()
        assert not found["balanced"] and found["mismatches"] == 1
        assert found["findings"][0]["detail"] == (
            "a at default: on_hand is 399 in the stock table, but its movements add up to 400"
        )
    command = [sys.executable, "-m", "stockade", "check", "--database",
               f"sqlite:///{server.database}"]  # fmt: skip
    done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 1, done.stderr
    assert b"on_hand is 399 in the stock table" in done.stdout
    assert server.stop() == 0
