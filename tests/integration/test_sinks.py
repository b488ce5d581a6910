"""Broker sinks against the real brokers (tests/integration/brokers.py): every event published
in seq order, exactly once to NATS JetStream and Redis Streams (the brokers drop repeats by
message id) and at least once to RabbitMQ; a broker that is unreachable makes its sink failing
while the others, the webhooks and the orders go on, and it catches up when it is back."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
import trio

import stockade
from bench.server import Server
from bench.webhook_receiver import Receiver
from stockade._open import open_engine_and_store
from stockade.outbound.service import Outbound
from stockade.outbound.sinks import Sink, SinkOptions
from stockade.outbound.webhooks import DeliveryOptions
from stockade.persistence.sinks import SinkStore
from stockade.persistence.webhooks import WebhookStore
from tests.integration.brokers import KINDS, REDIS, Target, asyncio_thread, host_port, require
from tests.integration.proxy import Proxy
from tests.integration.test_webhooks import caught_up, shop

QUICK = SinkOptions(backoff_s=0.01, max_backoff_s=0.1, timeout_s=2.0, retry_budget_s=0.2,
                    save_every_s=0.05, batch=50)  # fmt: skip
HOOKS = DeliveryOptions(backoff_s=0.01, max_backoff_s=0.05, timeout_s=2.0, save_every_s=0.05)
SECRET = "whsec_" + "B" * 32


def message_seq(kind: str, message_id: str) -> int:
    """The seq a message carries as its id (a Redis entry id is ``SEQ-1``)."""
    return int(message_id.removesuffix("-1") if kind == "redis" else message_id)


def check_published(
    kind: str, messages: list[tuple[str, dict[str, Any]]], events: list[stockade.Event]
) -> None:
    """``messages`` (what a consumer read, in arrival order) are ``events``: each event's JSON
    under its seq, first arrivals in seq order, none missing; a repeat (RabbitMQ only) has the
    same body. NATS and Redis hold each event exactly once."""
    seen: dict[int, dict[str, Any]] = {}
    first: list[int] = []
    for message_id, body in messages:
        seq = message_seq(kind, message_id)
        assert body["seq"] == seq
        if seq not in seen:
            first.append(seq)
        assert seen.setdefault(seq, body) == body
    assert first == [e.seq for e in events]  # in order, none missing
    if kind != "amqp":
        assert len(messages) == len(events)  # exactly once
    for event in events:
        assert seen[event.seq] == msgspec.to_builtins(event)


@asynccontextmanager
async def publishing(database: str) -> AsyncIterator[tuple[stockade.Engine, Outbound]]:
    """An engine on ``database`` and its deliveries, running until exit."""
    async with open_engine_and_store(database, None, "durable") as (engine, store):
        assert isinstance(store, SinkStore) and isinstance(store, WebhookStore)
        outbound = Outbound(engine, store.webhook_table(), store.sink_table(), options=HOOKS,
                            sink_options=QUICK)  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(outbound.run)
            yield engine, outbound
            nursery.cancel_scope.cancel()


async def sink_of(outbound: Outbound, sink_id: str) -> Sink:
    sink = await outbound.sinks.get(sink_id)
    assert sink is not None
    return sink


@pytest.mark.parametrize("kind", KINDS)
async def test_a_sink_publishes_every_event_in_seq_order(kind, tmp_path):
    require(kind)
    async with asyncio_thread() as aio:
        every, placed = Target(kind, aio), Target(kind, aio)
        await every.prepare()
        await placed.prepare()
        try:
            async with publishing(f"sqlite:///{tmp_path / 'stock.db'}") as (engine, outbound):
                start = engine.feed_head or 0
                saved = await outbound.put_sink("every", every.url, None)
                assert saved.created and saved.sink.cursor == start
                await outbound.put_sink("placed", placed.url, ["order.placed"])
                await engine.set_stock("a", 10_000)
                await shop(engine, 120)  # more than a batch (50) at a time
                sinks = [await sink_of(outbound, "every"), await sink_of(outbound, "placed")]
                await caught_up(engine, *sinks)
                events, _ = await engine.event_page(start, 1000)
                assert not any(s.failing or s.last_error for s in sinks)
                assert sinks[0].delivered == len(events)
            check_published(kind, await every.messages(), events)
            wanted = [e for e in events if e.type == "order.placed"]
            check_published(kind, await placed.messages(), wanted)
            assert len(wanted) == 120
        finally:
            await every.clean()
            await placed.clean()


async def test_an_unreachable_broker_fails_alone_and_catches_up(tmp_path):
    for kind in KINDS:
        require(kind)
    receiver = Receiver()
    async with asyncio_thread() as aio, trio.open_nursery() as nursery:
        proxy = Proxy(*host_port(REDIS))
        await nursery.start(proxy.run)
        through = Target("redis", aio, f"127.0.0.1:{proxy.port}")  # read back from Redis
        others = [Target("nats", aio), Target("amqp", aio)]
        for target in others:
            await target.prepare()
        port = await nursery.start(receiver.run)
        try:
            async with publishing(f"sqlite:///{tmp_path / 'stock.db'}") as (engine, outbound):
                start = engine.feed_head or 0
                await outbound.put_sink("cut", through.url, None)
                for target in others:
                    await outbound.put_sink(target.kind, target.url, None)
                await outbound.put_webhook("hook", f"http://127.0.0.1:{port}/h", None, SECRET)
                await engine.set_stock("a", 10_000)
                await shop(engine, 10)
                cut = await sink_of(outbound, "cut")
                going = [await sink_of(outbound, t.kind) for t in others]
                await caught_up(engine, cut, *going)
                proxy.cut()
                await shop(engine, 40)  # orders are unaffected by a broker that is away
                with trio.fail_after(30):
                    while not cut.failing:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                shown = await outbound.get_sink("cut")
                assert shown is not None and shown.failing and shown.backlog > 0
                assert shown.last_error and shown.failures > 0
                hook = await outbound.webhooks.get("hook")
                assert hook is not None
                await caught_up(engine, *going, hook)  # the others keep going meanwhile
                assert cut.failing and cut.cursor < (engine.feed_head or 0)
                proxy.restore()
                await caught_up(engine, cut)
                assert not cut.failing
                events, _ = await engine.event_page(start, 1000)
            check_published("redis", await through.messages(), events)
            for target in others:
                check_published(target.kind, await target.messages(), events)
        finally:
            for target in (through, *others):
                await target.clean()
            nursery.cancel_scope.cancel()
    assert len(events) > 100


async def test_a_restart_resumes_each_sink_from_its_saved_cursor(tmp_path):
    require("nats")
    database = f"sqlite:///{tmp_path / 'stock.db'}"
    async with asyncio_thread() as aio:
        target = Target("nats", aio)
        try:
            async with publishing(database) as (engine, outbound):
                start = engine.feed_head or 0
                await outbound.put_sink("s", target.url, ["order.placed", "order.confirmed"])
                await engine.set_stock("a", 1000)
                await shop(engine, 20)
                await caught_up(engine, await sink_of(outbound, "s"))
            async with publishing(database) as (engine, outbound):
                sink = await sink_of(outbound, "s")
                assert sink.types == ("order.placed", "order.confirmed")  # as it was put
                await shop(engine, 20)
                await caught_up(engine, sink)
                events, _ = await engine.event_page(start, 1000, sink.types)
            check_published("nats", await target.messages(), events)
        finally:
            await target.clean()


async def test_a_password_is_never_shown_back(tmp_path):
    async with publishing(f"sqlite:///{tmp_path / 'stock.db'}") as (engine, outbound):
        url = "amqp://shop:s3cret-pw@127.0.0.1:1/%2F?exchange=events"  # nothing listens
        saved = await outbound.put_sink("amqp", url, None)
        assert saved.sink.url == "amqp://shop:***@127.0.0.1:1/%2F?exchange=events"
        await engine.set_stock("a", 5)
        sink = await sink_of(outbound, "amqp")
        with trio.fail_after(30):
            while sink.failures < 2:  # noqa: ASYNC110
                await trio.sleep(0.01)
        shown = await outbound.list_sinks()
        assert "s3cret" not in json.dumps(msgspec.to_builtins(shown))
        assert shown.items[0].last_error


async def all_events(client: httpx.AsyncClient, headers: dict[str, str]) -> list[stockade.Event]:
    events: list[stockade.Event] = []
    after = 0
    while True:
        page = (await client.get(f"/v1/events?after={after}&limit=1000", headers=headers)).json()
        events += msgspec.convert(page["items"], list[stockade.Event])
        if not page["items"]:
            return events
        after = page["next_after"]


async def post_order(port: int, token: str) -> int | None:
    """POST one order on a connection of its own; the answer's status, None if the server
    went away first. (Raw HTTP/1.1: httpx leaves its body generator unfinished, and reported
    as unraisable, when the server dies mid-request.)"""
    body = b'{"lines": [{"sku": "a", "qty": 1}]}'
    head = (f"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")  # fmt: skip
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(head.encode() + body)
            answer = b""
            while b"\r\n" not in answer:
                piece = await stream.receive_some(4096)
                if not piece:
                    return None
                answer += piece
    except (OSError, trio.BrokenResourceError):
        return None
    return int(answer.split(b" ", 2)[1])


async def orders_until_killed(token: str, server: Server) -> int:
    """Place orders from 8 callers until ``server`` is killed mid-way (after 150 of them);
    the number acknowledged."""
    acknowledged = 0

    async def caller() -> None:
        nonlocal acknowledged
        while (status := await post_order(server.port, token)) is not None:
            assert status == 201, status
            acknowledged += 1
            if acknowledged == 150:
                server.stop(signal.SIGKILL)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(caller)
    return acknowledged


async def test_kill_9_while_sinks_publish_loses_and_repeats_nothing_on_nats_and_redis(tmp_path):
    for kind in KINDS:
        require(kind)
    token = "sinks-token"
    admin = {"Authorization": f"Bearer {token}"}
    server = Server(tmp_path, token)
    async with asyncio_thread() as aio:
        targets = [Target(kind, aio) for kind in KINDS]
        for target in targets:
            await target.prepare()
        try:
            server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                for target in targets:
                    made = await client.put(f"/v1/sinks/{target.kind}", headers=admin,
                                            json={"url": target.url})  # fmt: skip
                    assert made.status_code == 201, made.text
                await client.put("/v1/products/a", json={"on_hand": 100_000}, headers=admin)
            for _ in range(2):  # killed twice while publishing, restarted each time
                assert await orders_until_killed(token, server) >= 150
                server.start()
            log = server.log.read_text()
            assert log.count('"sink_failing"') == 0 and log.count('"listening"') == 3
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                with trio.fail_after(60):
                    while True:
                        shown = (await client.get("/v1/sinks", headers=admin)).json()["items"]
                        if all(s["backlog"] == 0 for s in shown):
                            break
                        await trio.sleep(0.05)
                events = await all_events(client, admin)
            assert server.stop() == 0
            assert not any(s["failing"] for s in shown)
            for target in targets:
                check_published(target.kind, await target.messages(), events)
            assert sum(e.type == "order.placed" for e in events) >= 300  # each acknowledged
        finally:
            server.kill()
            for target in targets:
                await target.clean()
