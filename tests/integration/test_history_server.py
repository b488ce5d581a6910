"""History and the books check on the real server (``stockade serve`` on SQLite): the check
reads the store the server owns while it takes orders, and finds a hand edit made behind its
back; ``stockade check`` from another process agrees."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator

import httpx
import pytest
import trio

from bench.server import Server

TOKEN = "history-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    server = Server(tmp_path, TOKEN)
    server.start()
    yield server
    server.kill()


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
