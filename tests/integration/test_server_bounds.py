"""The real server with --public-holds: a rush of anonymous holds from one address never passes
the open-holds bound; the request rate answers 429; X-Forwarded-For counts only when trusted;
the engine's options given as flags are what the engine enforces."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from bench.server import Server
from tests.integration.test_server import ADMIN, TOKEN

HOLD = {"lines": [{"sku": "drop", "qty": 1}], "hold_seconds": 300}


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[Server]:
    flags = ("--public-holds", "--public-max-open", "3", "--public-rate", "1000",
             "--max-hold", "10m")  # fmt: skip
    server = Server(tmp_path, TOKEN, args=flags)
    server.start()
    yield server
    server.kill()


async def rush(client: httpx.AsyncClient, count: int, **kw: object) -> list[httpx.Response]:
    answers: list[httpx.Response] = []

    async def one() -> None:
        answers.append(await client.post("/v1/orders", json=HOLD, **kw))  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return answers


async def test_a_rush_of_one_address_never_passes_the_open_holds_bound(bounded):
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=bounded.url, limits=limits, timeout=30) as client:
        put = await client.put("/v1/products/drop", json={"on_hand": 500}, headers=ADMIN)
        assert put.status_code == 201
        answers = await rush(client, 200)
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {201: 3, 429: 197}, statuses
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["type"] == "/problems/too-many-holds"
        assert 1 <= int(refused.headers["Retry-After"]) <= 300
        stock = (await client.get("/v1/products/drop")).json()
        assert stock["reserved"] == 3
        held = next(a for a in answers if a.status_code == 201).json()
        assert (await client.post(f"/v1/orders/{held['id']}/cancel")).status_code == 200
        again = await rush(client, 50)
        assert Counter(a.status_code for a in again) == {201: 1, 429: 49}
        assert (await client.get("/v1/products/drop")).json()["reserved"] == 3
        # a key is never bounded; the engine's --max-hold reached the engine
        keyed = await client.post("/v1/orders", json={**HOLD, "hold_seconds": 600},
                                  headers=ADMIN)  # fmt: skip
        assert keyed.status_code == 201
        longer = await client.post("/v1/orders", json={**HOLD, "hold_seconds": 601},
                                   headers=ADMIN)  # fmt: skip
        assert longer.status_code == 422 and "hold" in longer.json()["detail"]
    assert bounded.stop() == 0


async def test_the_rate_and_the_forwarded_address_on_a_real_server(tmp_path):
    server = Server(tmp_path, TOKEN, args=("--public-holds", "--public-max-open", "2",
                                           "--public-rate", "2"))  # fmt: skip
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await client.put("/v1/products/drop", json={"on_hand": 500}, headers=ADMIN)
            spoofed = [{"X-Forwarded-For": f"10.1.1.{i}"} for i in range(20)]
            answers = [await client.post("/v1/orders", json=HOLD, headers=h) for h in spoofed]
            kinds = Counter(
                (a.status_code, a.json().get("type")) for a in answers if a.status_code != 201
            )
            # one address whatever the header says: 2 holds, then its holds or its rate
            assert sum(a.status_code == 201 for a in answers) == 2
            assert kinds[429, "/problems/too-many-requests"] >= 1  # (a slow machine refills)
            assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 429)
    finally:
        server.kill()
    trusting = Server(tmp_path, TOKEN, args=("--public-holds", "--public-max-open", "2",
                                             "--trust-forwarded"))  # fmt: skip
    trusting.start()
    try:
        async with httpx.AsyncClient(base_url=trusting.url, timeout=30) as client:
            forwarded = [{"X-Forwarded-For": f"6.6.6.6, 10.1.1.{i}"} for i in range(3)] * 3
            statuses = [
                (await client.post("/v1/orders", json=HOLD, headers=h)).status_code
                for h in forwarded
            ]
            assert statuses == [201] * 6 + [429] * 3  # three clients, two holds each
    finally:
        trusting.kill()


async def test_a_rush_spread_over_two_fronts_meets_one_open_holds_count(tmp_path):
    """With fronts (design.md §12) the count is the engine's: one address rushing through two
    fronts, both on 127.0.0.1 (one client address), still gets exactly the bound."""
    from tests.integration.fronts import ADMIN as FRONTS_ADMIN
    from tests.integration.fronts import Cluster

    socket_dir = Path(tempfile.mkdtemp(prefix="stk", dir="/tmp"))  # short: AF_UNIX paths
    cluster = Cluster(tmp_path, socket_dir, "--public-holds", "--public-max-open", "4",
                      "--public-rate", "1000")  # fmt: skip
    for front in cluster.fronts:  # the same client address reaches both
        front.host, front.url = "127.0.0.1", f"http://127.0.0.1:{front.port}"
        front.extra_env["STOCKADE_HOST"] = "127.0.0.1"
    try:
        cluster.start()
        limits = httpx.Limits(max_connections=100)
        clients = [httpx.AsyncClient(base_url=f.url, limits=limits, timeout=30)
                   for f in cluster.fronts]  # fmt: skip
        async with clients[0], clients[1]:
            stocking = {"on_hand": 500}
            put = await clients[0].put("/v1/products/drop", json=stocking, headers=FRONTS_ADMIN)
            assert put.status_code == 201
            answers: list[httpx.Response] = []

            async def one(client: httpx.AsyncClient) -> None:
                answers.append(await client.post("/v1/orders", json=HOLD))

            async with trio.open_nursery() as nursery:
                for i in range(120):
                    nursery.start_soon(one, clients[i % 2])
            assert Counter(a.status_code for a in answers) == {201: 4, 429: 116}
            assert {a.json()["type"] for a in answers if a.status_code == 429} == {
                "/problems/too-many-holds"
            }
            assert (await clients[1].get("/v1/products/drop")).json()["reserved"] == 4
    finally:
        cluster.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


async def test_serve_workers_passes_its_flags_and_counts_holds_in_its_engine(tmp_path):
    """serve --workers 2: the bound given as a flag reaches both fronts, --max-hold the engine
    process, and one address's rush meets one count however the port spreads it."""
    from tests.integration.test_supervisor import alive
    from tests.integration.test_workers import ADMIN as WORKERS_ADMIN
    from tests.integration.test_workers import Workers

    server = Workers(tmp_path)
    server.args = (*server.args, "--public-holds", "--public-max-open", "3", "--public-rate",
                   "1000", "--max-hold", "10m")  # fmt: skip
    server.start()
    try:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            stocking = {"on_hand": 500}
            put = await client.put("/v1/products/drop", json=stocking, headers=WORKERS_ADMIN)
            assert put.status_code == 201
            answers = await rush(client, 120)
            assert Counter(a.status_code for a in answers) == {201: 3, 429: 117}
            longer = await client.post("/v1/orders", json={**HOLD, "hold_seconds": 601},
                                       headers=WORKERS_ADMIN)  # fmt: skip
            assert longer.status_code == 422 and "hold" in longer.json()["detail"]
    finally:
        server.kill()
        for pid in server.children("front") + server.children("engine"):
            if alive(pid):  # a failure half-way: leave nothing behind
                os.kill(pid, signal.SIGKILL)
        for pid in server.children("front") + server.children("engine"):
            if alive(pid):  # a failure half-way: leave nothing behind
                os.kill(pid, signal.SIGKILL)
