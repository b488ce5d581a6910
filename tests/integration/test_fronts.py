"""One engine, two fronts (design.md §12): a real ``stockade engine`` on a Unix socket and two
real ``stockade serve --engine`` fronts on 127.0.0.1 and 127.0.0.2, driven over HTTP."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bench.webhook_receiver import Receiver
from tests.integration.brokers import Target, asyncio_thread, require
from tests.integration.engine_process import EngineProcess
from tests.integration.feedhttp import get
from tests.integration.fronts import ADMIN, BUY, TOKEN, Cluster, Front, buy, lines
from tests.integration.fronts import cluster as cluster  # the fixture
from tests.integration.test_keys import cli
from tests.standard_webhooks import signature_is_valid


async def test_a_last_unit_rush_through_two_fronts_sells_exactly_the_stock(cluster):
    one, two = cluster.fronts
    limits = httpx.Limits(max_connections=200)
    async with (
        httpx.AsyncClient(base_url=one.url, limits=limits, timeout=30) as a,
        httpx.AsyncClient(base_url=two.url, limits=limits, timeout=30) as b,
    ):
        put = await a.put("/v1/products/hot", json={"on_hand": 50}, headers=ADMIN)
        assert put.status_code == 201
        codes: list[int] = []

        async def buyer(client: httpx.AsyncClient) -> None:
            codes.append((await client.post("/v1/orders", json=BUY, headers=ADMIN)).status_code)

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(buyer, a if i % 2 else b)
        assert sorted(codes) == [201] * 50 + [409] * 150
        for client in (a, b):
            level = (await client.get("/v1/products/hot")).json()
            assert level == {
                "sku": "hot",
                "on_hand": 0,
                "reserved": 0,
                "available": 0,
                "on_sale": True,
            }
    for front in cluster.fronts:
        assert front.stop() == 0
    assert cluster.engine.stop() == 0


async def test_keys_made_and_revoked_through_one_front_work_on_the_other_within_a_second(
    cluster,
):
    one, two = cluster.fronts
    async with httpx.AsyncClient(timeout=10) as client:
        await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
        made = await client.post(f"{one.url}/v1/keys", json={"role": "service"}, headers=ADMIN)
        assert made.status_code == 201
        key, key_id = made.json()["key"], made.json()["id"]
        service = {"Authorization": f"Bearer {key}"}
        assert await buy(client, one, service) == 201  # at once where it was made
        await buying_answers(client, two, service, 201)  # within a second on the other
        listed = (await client.get(f"{two.url}/v1/keys", headers=ADMIN)).json()["items"]
        assert [k["id"] for k in listed] == [key_id]
        revoked = await client.delete(f"{one.url}/v1/keys/{key_id}", headers=ADMIN)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert await buy(client, one, service) == 401
        await buying_answers(client, two, service, 401)


async def test_a_key_made_and_revoked_with_the_cli_reaches_every_front(cluster):
    one, two = cluster.fronts
    async with httpx.AsyncClient(timeout=10) as client:
        await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
        code, key, _ = await cli("create", "--role", "service", "--database", cluster.database)
        assert code == 0
        service = {"Authorization": f"Bearer {key.strip()}"}
        for front in (one, two):  # the engine re-reads the table, the fronts poll the engine
            await buying_answers(client, front, service, 201, within_s=2.5)
        key_id = key.strip().split("_")[1]
        code, _, _ = await cli("revoke", key_id, "--database", cluster.database)
        assert code == 0
        for front in (one, two):
            await buying_answers(client, front, service, 401, within_s=2.5)


async def buying_answers(
    client: httpx.AsyncClient, front: Front, headers: dict[str, str], status: int,
    within_s: float = 1.5,
) -> None:  # fmt: skip
    """Wait until buying through ``front`` with ``headers`` answers ``status``: at most
    ``within_s`` (a front re-reads the keys every second, the engine its table when its copy
    is older than 0.5 s; the rest is the test's own polling)."""
    started = time.monotonic()
    while await buy(client, front, headers) != status:
        assert time.monotonic() - started < within_s, f"{front.url} never answered {status}"
        await trio.sleep(0.05)


async def test_an_idempotent_retry_through_the_other_front_gets_the_same_order(cluster):
    one, two = cluster.fronts
    keyed = {**ADMIN, "Idempotency-Key": "cart-42"}
    async with httpx.AsyncClient(timeout=10) as client:
        await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
        first = await client.post(f"{one.url}/v1/orders", json=BUY, headers=keyed)
        again = await client.post(f"{two.url}/v1/orders", json=BUY, headers=keyed)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        two_units = {"lines": [{"sku": "hot", "qty": 2}]}
        other = await client.post(f"{two.url}/v1/orders", json=two_units, headers=keyed)
        assert other.status_code == 409
        assert other.json()["type"] == "/problems/idempotency-conflict"
        level = (await client.get(f"{two.url}/v1/products/hot")).json()
        assert level["on_hand"] == 4 and level["available"] == 4  # sold once


async def test_carts_locations_history_and_the_books_check_through_a_front(cluster):
    one, two = cluster.fronts
    async with httpx.AsyncClient(timeout=30) as client:
        north = {"name": "North", "priority": 0, "active": True}
        put = await client.put(f"{one.url}/v1/locations/north", json=north, headers=ADMIN)
        assert put.status_code == 201
        again = await client.put(f"{two.url}/v1/locations/north", json=north, headers=ADMIN)
        assert again.status_code == 200  # the other front sees it exists
        patched = await client.patch(f"{two.url}/v1/locations/north", json={"priority": 3},
                                     headers=ADMIN)  # fmt: skip
        assert patched.json() == {"id": "north", "name": "North", "priority": 3, "active": True}
        stocked = await client.put(f"{two.url}/v1/products/hot/locations/north",
                                   json={"on_hand": 7}, headers=ADMIN)  # fmt: skip
        assert stocked.status_code == 201, stocked.text
        hold = {**BUY, "hold_seconds": 60}
        held = (await client.post(f"{one.url}/v1/orders", json=hold, headers=ADMIN)).json()
        three = {"lines": [{"sku": "hot", "qty": 3}]}
        changed = await client.patch(f"{two.url}/v1/orders/{held['id']}", json=three,
                                     headers=ADMIN)  # fmt: skip
        assert changed.status_code == 200, changed.text
        confirmed = await client.post(f"{one.url}/v1/orders/{held['id']}/confirm", headers=ADMIN)
        assert confirmed.status_code == 200, confirmed.text
        one_back = {"lines": [{"sku": "hot", "qty": 1}]}
        returned = await client.post(f"{two.url}/v1/orders/{held['id']}/returns", json=one_back,
                                     headers=ADMIN)  # fmt: skip
        assert returned.status_code == 200, returned.text
        level = (await client.get(f"{one.url}/v1/products/hot")).json()
        assert level["on_hand"] == 7 - 3 + 1 and level["reserved"] == 0
        listed = (await client.get(f"{one.url}/v1/orders", headers=ADMIN)).json()["items"]
        assert [o["id"] for o in listed] == [held["id"]]
        moves = await client.get(f"{two.url}/v1/products/hot/movements", headers=ADMIN)
        assert moves.status_code == 200 and moves.json()["items"]
        check = await client.get(f"{one.url}/v1/admin/check", headers=ADMIN)
        assert check.status_code == 200 and check.json()["balanced"] is True
        locations = (await client.get(f"{two.url}/v1/locations", headers=ADMIN)).json()["items"]
        assert "north" in [loc["id"] for loc in locations]


async def test_feed_pages_and_streams_through_a_front(cluster):
    one, two = cluster.fronts
    async with httpx.AsyncClient(timeout=10) as client:
        await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
        page = (await client.get(f"{two.url}/v1/events", headers=ADMIN)).json()
        assert "stock.changed" in [e["type"] for e in page["items"]]
        after = page["next_after"]
        with trio.fail_after(10):
            async with get(two.url, f"/v1/events/stream?after={after}", ADMIN) as stream:
                assert stream.status == 200
                order = (await client.post(f"{one.url}/v1/orders", json=BUY,
                                           headers=ADMIN)).json()  # fmt: skip
                types = []
                while True:
                    message = await stream.message()
                    assert message is not None and message.id > after
                    types.append(message.fields["event"])
                    if message.fields["event"] == "order.placed":
                        assert order["id"] in message.fields["data"]
                        break
            async with get(one.url, "/v1/products/hot/stream") as levels:
                first = await levels.message()
                assert first is not None and first.data["available"] == 4
                await client.post(f"{two.url}/v1/orders", json=BUY, headers=ADMIN)
                changed = await levels.message()
                assert changed is not None and changed.data["available"] == 3
        assert types[-1] == "order.placed"


async def test_metrics_readiness_and_logs_of_a_front(cluster):
    one, _ = cluster.fronts
    async with httpx.AsyncClient(timeout=10) as client:
        await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
        await client.post(f"{one.url}/v1/orders", json=BUY, headers=ADMIN)
        text = (await client.get(f"{one.url}/metrics")).text
        assert "stockade_orders_placed_total 1.0" in text  # the engine's, over the protocol
        assert 'stockade_http_requests_total{route="/v1/orders",status="201"} 1.0' in text
        assert text.count("# TYPE stockade_orders_placed_total counter") == 1
        ready = await client.get(f"{one.url}/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
    logged = lines(one.log)
    assert logged and all(line.get("role") == "front" for line in logged)


async def test_the_trace_context_crosses_the_hop(tmp_path):
    """With tracing on (the console exporter: one JSON line per span on stderr), the engine's
    span of a call is the child of the front's span of that engine call, in the caller's
    trace."""
    socket_dir = Path(tempfile.mkdtemp(prefix="stk", dir="/tmp"))
    cluster = Cluster(tmp_path, socket_dir)
    traced = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    one = cluster.fronts[0]
    one.extra_env.update(traced)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in traced.items():  # the engine's env is the test process's
                patch.setenv(name, value)
            cluster.engine.start()
        one.start()
        async with httpx.AsyncClient(timeout=10) as client:
            await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
            parent = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
            placed = await client.post(f"{one.url}/v1/orders", json=BUY,
                                       headers={**ADMIN, **parent})  # fmt: skip
            assert placed.status_code == 201

        def spans(log: Path, name: str) -> list[dict[str, Any]]:
            found = []
            for line in log.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    span = json.loads(line)
                    if span.get("name") == name and span["context"]["trace_id"] == f"0x{trace_id}":
                        found.append(span)
            return found

        deadline = time.monotonic() + 10
        while not (spans(cluster.engine.log, "stockade.engine.place_order")
                   and spans(one.log, "stockade.place_order")):  # fmt: skip
            assert time.monotonic() < deadline, "the spans were never exported"
            await trio.sleep(0.05)
        (engine_span,) = spans(cluster.engine.log, "stockade.engine.place_order")
        (front_span,) = spans(one.log, "stockade.place_order")
        assert engine_span["parent_id"] == front_span["context"]["span_id"]
    finally:
        cluster.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


async def test_webhooks_made_through_a_front_are_delivered_by_the_engine_process(cluster):
    one, two = cluster.fronts
    receiver = Receiver()
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.run)
        async with httpx.AsyncClient(timeout=10) as client:
            await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
            hook = {"url": f"http://127.0.0.1:{port}/orders", "types": ["order.placed"],
                    "secret": secret}  # fmt: skip
            made = await client.put(f"{one.url}/v1/webhooks/shop", json=hook, headers=ADMIN)
            assert made.status_code == 201, made.text
            order = (await client.post(f"{two.url}/v1/orders", json=BUY, headers=ADMIN)).json()
            with trio.fail_after(10):
                await receiver.wait_for(1)
            (delivered,) = receiver.requests
            assert signature_is_valid(delivered.headers, delivered.body, secret)
            assert json.loads(delivered.body)["data"]["id"] == order["id"]
            with trio.fail_after(10):  # the cursor, as the other front shows it
                while True:
                    shown = (await client.get(f"{two.url}/v1/webhooks/shop", headers=ADMIN)).json()
                    if not shown["backlog"]:
                        break
                    await trio.sleep(0.05)
            assert shown["cursor"] == shown["head"] and shown["failing"] is False
            listed = (await client.get(f"{two.url}/v1/webhooks", headers=ADMIN)).json()
            assert [w["id"] for w in listed["items"]] == ["shop"]
            bad = await client.put(f"{two.url}/v1/webhooks/shop", json={**hook, "url": "ftp://x"},
                                   headers=ADMIN)  # fmt: skip
            assert bad.status_code == 422  # the engine process's refusal, as one process says it
            gone = await client.delete(f"{two.url}/v1/webhooks/shop", headers=ADMIN)
            assert gone.status_code == 200
            missing = await client.get(f"{one.url}/v1/webhooks/shop", headers=ADMIN)
            assert missing.status_code == 404
            text = (await client.get(f"{one.url}/metrics")).text
            assert 'stockade_webhook_deliveries_total{outcome="delivered"} 1.0' in text
        nursery.cancel_scope.cancel()


async def test_sinks_made_through_a_front_are_published_by_the_engine_process(cluster):
    require("redis")
    one, two = cluster.fronts
    async with asyncio_thread() as aio:
        target = Target("redis", aio)
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                await client.put(f"{one.url}/v1/products/hot", json={"on_hand": 5}, headers=ADMIN)
                sink = {"url": target.url, "types": ["order.placed"]}
                made = await client.put(f"{one.url}/v1/sinks/shop", json=sink, headers=ADMIN)
                assert made.status_code == 201, made.text
                order = (await client.post(f"{two.url}/v1/orders", json=BUY, headers=ADMIN)).json()
                with trio.fail_after(10):  # the cursor, as the other front shows it
                    while True:
                        shown = (await client.get(f"{two.url}/v1/sinks/shop", headers=ADMIN)).json()
                        if not shown["backlog"] and shown["delivered"]:
                            break
                        await trio.sleep(0.05)
                ((_, event),) = await target.messages()
                assert event["type"] == "order.placed" and event["data"]["id"] == order["id"]
                bad = await client.put(f"{two.url}/v1/sinks/shop", json={"url": "kafka://x/y"},
                                       headers=ADMIN)  # fmt: skip
                assert bad.status_code == 422 and "unknown scheme" in bad.json()["detail"]
                text = (await client.get(f"{one.url}/metrics")).text
                assert 'stockade_sink_delivered_total{sink="shop"} 1.0' in text
                gone = await client.delete(f"{two.url}/v1/sinks/shop", headers=ADMIN)
                assert gone.status_code == 200
                assert (await client.get(f"{one.url}/v1/sinks", headers=ADMIN)).json() == {
                    "items": []
                }
        finally:
            await target.clean()


async def test_a_front_on_another_address_proves_the_secret_over_tcp(tmp_path):
    database = f"sqlite:///{tmp_path / 'stockade.db'}"
    engine = EngineProcess(tmp_path, database, "tcp://127.0.0.1:0", secret="s3cret")
    right = Front(tmp_path, TOKEN, "", host="127.0.0.2", name="right",
                  env={"STOCKADE_ENGINE_SECRET": "s3cret"})  # fmt: skip
    wrong = Front(tmp_path, TOKEN, "", host="127.0.0.2", name="wrong",
                  env={"STOCKADE_ENGINE_SECRET": "guess"})  # fmt: skip
    try:
        engine.start()
        for front in (right, wrong):
            front.args = ("--engine", engine.url)
        right.start()
        async with httpx.AsyncClient(timeout=10) as client:
            await client.put(f"{right.url}/v1/products/hot", json={"on_hand": 1}, headers=ADMIN)
            assert await buy(client, right, ADMIN) == 201
        with pytest.raises(RuntimeError, match="did not start"):
            wrong.start()  # refused: it exits, saying why
        refused = [line for line in lines(wrong.log) if line.get("event") == "failed"]
        assert refused and refused[0]["error"] == "EngineRefused"
        assert right.stop() == 0
    finally:
        right.kill()
        wrong.kill()
        engine.kill()
