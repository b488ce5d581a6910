"""Webhook delivery to a real receiver on loopback (bench/webhook_receiver.py): in seq order, at
least once, signed as the Standard Webhooks spec says, through a receiver that is down, fails,
hangs or hangs up; resumed after a restart; never held back by another subscription."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
import trio
import trio.testing

import stockade
from bench.server import Server
from bench.webhook_receiver import Receiver, Request
from stockade._open import open_engine_and_store
from stockade.outbound.deliveries import Followed
from stockade.outbound.webhooks import DeliveryOptions, Subscription, Webhooks
from stockade.persistence.webhooks import WebhookStore
from tests.integration.proxy import Proxy
from tests.integration.test_postgres_faults import via_proxy
from tests.standard_webhooks import signature_is_valid

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
QUICK = DeliveryOptions(backoff_s=0.01, max_backoff_s=0.05, timeout_s=0.5, retry_budget_s=0.2,
                        save_every_s=0.05)  # fmt: skip


def check_deliveries(requests: list[Request], events: list[stockade.Event]) -> None:
    """``requests`` delivered exactly ``events``: each one signed; each event first arrived in
    seq order, none missing (an event is sent only once the one before it was answered 2xx);
    any other arrival a repeat of one that arrived already, with the same id and body (a retry
    whose earlier attempt arrived after all, late or before a timeout; a restart resuming
    from a cursor saved before the last deliveries)."""
    bodies: dict[str, bytes] = {}
    first: list[int] = []
    for request in requests:
        assert request.headers["content-type"] == "application/json"
        assert signature_is_valid(request.headers, request.body, SECRET), request.headers
        webhook_id = request.webhook_id
        assert json.loads(request.body)["seq"] == int(webhook_id)
        if webhook_id not in bodies:
            first.append(int(webhook_id))
        assert bodies.setdefault(webhook_id, request.body) == request.body  # a repeat is the same
    assert first == [e.seq for e in events]  # in order, none missing
    for event in events:
        assert json.loads(bodies[str(event.seq)]) == msgspec.to_builtins(event)


@asynccontextmanager
async def delivering(
    database: str | None = None, store: Any = None, options: DeliveryOptions = QUICK
) -> AsyncIterator[tuple[stockade.Engine, Webhooks]]:
    """An engine on ``database`` (or ``store``) and its webhooks, delivered until exit. Durable:
    what a call changed is committed (and in the feed) when it returns."""
    async with open_engine_and_store(database, store, "durable") as (engine, opened):
        assert isinstance(opened, WebhookStore)
        hooks = Webhooks(engine, opened.webhook_table(), options)
        async with trio.open_nursery() as nursery:
            await nursery.start(hooks.run)
            yield engine, hooks
            nursery.cancel_scope.cancel()


def head_of(engine: stockade.Engine) -> int:
    head = engine.feed_head
    assert head is not None, "this engine keeps no feed"
    return head


async def subscribe(hooks: Webhooks, name: str, port: int, **kw: Any) -> Subscription:
    url = f"http://127.0.0.1:{port}/{name}"
    subscription, created = await hooks.put(name, url, kw.get("types"), SECRET)
    assert created
    return subscription


async def caught_up(engine: stockade.Engine, *subscriptions: Followed[Any]) -> None:
    """Wait (30 s at most) until each of ``subscriptions`` (webhooks or sinks) delivered every
    event committed so far."""
    with trio.fail_after(30):
        while any(s.cursor < (engine.feed_head or 0) for s in subscriptions):  # noqa: ASYNC110
            await trio.sleep(0.01)


async def shop(engine: stockade.Engine, orders: int) -> None:
    """Holds, purchases, confirms, cancels and returns: every kind of event."""
    for n in range(orders):
        order = await engine.place_order({"a": 1 + n % 2}, hold_for=60 if n % 3 else None)
        if n % 3 == 1:
            await engine.confirm(order.id)
        elif n % 5 == 0:
            await engine.cancel(order.id)


async def test_a_receiver_that_is_down_fails_hangs_and_hangs_up_gets_everything_in_order(
    tmp_path,
):
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.run)
        async with delivering(f"sqlite:///{tmp_path / 'stock.db'}") as (engine, hooks):
            start = head_of(engine)
            subscription = await subscribe(hooks, "flaky", port)
            await engine.set_stock("a", 10_000)
            for mode in ("down", 500, "hang", "close"):
                if mode == "down":
                    receiver.down()
                else:
                    receiver.mode = mode
                await shop(engine, 20)
                with trio.fail_after(30):  # until it is failing: past the retry budget
                    while not subscription.failing:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                assert subscription.cursor < head_of(engine)  # nothing skipped meanwhile
                receiver.up()
                receiver.mode = "ok"
                await caught_up(engine, subscription)
                assert not subscription.failing  # recovered at the first delivery
            assert hooks.outcomes["refused"] and hooks.outcomes["timeout"]
            assert hooks.outcomes["error"] and hooks.outcomes["delivered"]
            assert subscription.last_error is not None  # the last error stays on show
            events, _ = await engine.event_page(start, 1000)
        nursery.cancel_scope.cancel()
    check_deliveries(receiver.requests, events)
    assert len(events) > 80


async def test_a_restart_resumes_from_the_saved_cursor(tmp_path):
    database = f"sqlite:///{tmp_path / 'stock.db'}"
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.run)
        async with delivering(database) as (engine, hooks):
            subscription = await subscribe(hooks, "shop", port)
            await engine.set_stock("a", 1000)
            await shop(engine, 10)
            await caught_up(engine, subscription)
            first_head = head_of(engine)
        async with stockade.open_engine(database) as engine:  # no delivery meanwhile
            await shop(engine, 10)
        delivered_before = len(receiver.requests)
        async with delivering(database) as (engine, hooks):
            (subscription,) = await hooks.all()
            assert subscription.cursor == first_head  # saved when delivery stopped
            await caught_up(engine, subscription)
            events, _ = await engine.event_page(0, 1000)
        nursery.cancel_scope.cancel()
    check_deliveries(receiver.requests, events)
    again = [int(r.webhook_id) for r in receiver.requests[delivered_before:]]
    assert again[0] == first_head + 1  # nothing delivered twice across the restart


async def test_a_dead_receiver_never_holds_back_another():
    dead, healthy = Receiver(mode="hang"), Receiver()
    options = DeliveryOptions(timeout_s=3600.0)
    async with trio.open_nursery() as nursery:
        ports = [await nursery.start(r.run) for r in (dead, healthy)]
        async with delivering(store=stockade.MemoryStore(), options=options) as (engine, hooks):
            start = head_of(engine)
            stuck = await subscribe(hooks, "stuck", ports[0])
            fine = await subscribe(hooks, "fine", ports[1])
            await engine.set_stock("a", 1000)
            await shop(engine, 30)
            await caught_up(engine, fine)
            assert stuck.cursor == start and len(dead.requests) == 1  # still on its first
            events, _ = await engine.event_page(start, 1000)
            nursery.cancel_scope.cancel()
    check_deliveries(healthy.requests, events)


async def test_requests_in_flight_are_bounded_overall():
    dead = [Receiver(mode="hang") for _ in range(3)]
    options = DeliveryOptions(timeout_s=3600.0, max_in_flight=2)
    async with trio.open_nursery() as nursery:
        ports = [await nursery.start(r.run) for r in dead]
        async with delivering(store=stockade.MemoryStore(), options=options) as (engine, hooks):
            for n, port in enumerate(ports):
                await subscribe(hooks, f"stuck{n}", port)
            await engine.set_stock("a", 1000)
            limiter = hooks._in_flight
            with trio.fail_after(30):
                while limiter.statistics().tasks_waiting < 1:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                while sum(len(r.requests) for r in dead) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            assert limiter.statistics().borrowed_tokens == 2
            assert sorted(len(r.requests) for r in dead) == [0, 1, 1]  # the third one waits
            nursery.cancel_scope.cancel()


async def test_only_the_wanted_types_are_delivered():
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.run)
        async with delivering(store=stockade.MemoryStore()) as (engine, hooks):
            start = head_of(engine)
            wanted = ("order.confirmed", "product.sold_out")
            subscription = await subscribe(hooks, "paid", port, types=wanted)
            await engine.set_stock("a", 20)
            await shop(engine, 12)
            await engine.place_order({"a": (await engine.stock("a")).available})  # sold out
            await caught_up(engine, subscription)  # past the events it does not want too
            events, _ = await engine.event_page(start, 1000, wanted)
        nursery.cancel_scope.cancel()
    check_deliveries(receiver.requests, events)
    assert {e.type for e in events} == set(wanted)


async def all_events(engine: stockade.Engine, after: int) -> list[stockade.Event]:
    out: list[stockade.Event] = []
    while True:
        page, after = await engine.event_page(after, 1000)
        if not page:
            return out
        out += page


async def test_a_postgres_outage_loses_no_event_and_no_delivery(postgres_dsn):
    target = urlsplit(postgres_dsn)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
    receiver = Receiver()
    acked: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        port = await nursery.start(receiver.run)
        dsn = via_proxy(postgres_dsn, proxy.port)
        async with delivering(dsn) as (engine, hooks):
            start = head_of(engine)
            subscription = await subscribe(hooks, "shop", port)
            await engine.set_stock("a", 1_000_000)
            stop = trio.Event()

            async def buyer() -> None:
                while not stop.is_set():
                    try:
                        acked.append((await engine.place_order({"a": 1})).id)
                    except stockade.Overloaded:
                        await trio.sleep(0.01)

            async with trio.open_nursery() as load:
                for _ in range(10):
                    load.start_soon(buyer)
                await trio.sleep(0.3)
                proxy.cut()  # the store, the feed's history and the webhooks table go away
                await trio.sleep(1.0)
                assert not engine.statistics().journal.healthy
                proxy.restore()
                with trio.fail_after(30):
                    while not engine.statistics().journal.healthy:  # noqa: ASYNC110
                        await trio.sleep(0.05)
                await trio.sleep(0.3)
                stop.set()
            await caught_up(engine, subscription)
            events = await all_events(engine, start)
        nursery.cancel_scope.cancel()
    check_deliveries(receiver.requests, events)
    placed = [e.data["id"] for e in events if e.type == "order.placed"]
    assert sorted(placed) == sorted(acked) and len(acked) > 100  # one event per acknowledged


async def test_stockade_serve_delivers_and_resumes_after_kill_9(tmp_path):
    token = "hooks-token"
    admin = {"Authorization": f"Bearer {token}"}
    receiver = Receiver()
    server = Server(tmp_path, token)
    server.start()
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(receiver.run)
            hook = {"url": f"http://127.0.0.1:{port}/h", "secret": SECRET}
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                made = await client.put("/v1/webhooks/shop", json=hook, headers=admin)
                assert made.status_code == 201, made.text
                await client.put("/v1/products/a", json={"on_hand": 100}, headers=admin)
                await http_orders(client, admin, 10)
                await http_caught_up(client, admin)
            server.stop(signal.SIGKILL)  # no final save: the cursor saved last is older
            restarted = len(receiver.requests)
            server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                await http_orders(client, admin, 10)
                shown = await http_caught_up(client, admin)
                page = (await client.get("/v1/events?limit=1000", headers=admin)).json()
            nursery.cancel_scope.cancel()
        assert server.stop() == 0
    finally:
        server.kill()
    events = msgspec.convert(page["items"], list[stockade.Event])
    check_deliveries(receiver.requests, events)
    again = [int(r.webhook_id) for r in receiver.requests[restarted:]]
    assert again == sorted(again)  # resumed from a saved cursor, in order, repeats included
    assert shown["cursor"] == shown["head"] == events[-1].seq and not shown["failing"]


async def http_orders(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> None:
    for _ in range(count):
        placed = await client.post("/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]},
                                   headers=headers)  # fmt: skip
        assert placed.status_code == 201


async def http_caught_up(client: httpx.AsyncClient, headers: dict[str, str]) -> Any:
    with trio.fail_after(30):
        while True:
            shown = (await client.get("/v1/webhooks/shop", headers=headers)).json()
            if shown["backlog"] == 0:
                return shown
            await trio.sleep(0.05)


async def test_deliveries_end_quietly_when_the_engine_closes():
    async with trio.open_nursery() as nursery:
        opened = open_engine_and_store(store=stockade.MemoryStore(), durability="durable")
        async with opened as (engine, store):
            assert isinstance(store, WebhookStore)
            hooks = Webhooks(engine, store.webhook_table(), QUICK)
            await nursery.start(hooks.run)
            await subscribe(hooks, "quiet", 9)  # nothing to deliver: it waits for events
            await trio.testing.wait_all_tasks_blocked()
        await trio.testing.wait_all_tasks_blocked()  # its reader ended with EngineClosed
        nursery.cancel_scope.cancel()


def batches_of(requests: list[Request]) -> list[list[dict[str, Any]]]:
    """Each batched POST's events, checked: signed over the whole body, its ``webhook-id``
    the seq of its last event, its events in seq order."""
    out = []
    for request in requests:
        assert signature_is_valid(request.headers, request.body, SECRET), request.headers
        events = json.loads(request.body)["events"]
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        assert request.webhook_id == str(events[-1]["seq"])
        out.append(events)
    return out


async def test_a_batched_webhook_posts_up_to_n_events_at_once_signed_as_one(tmp_path):
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.run)
        async with delivering(f"sqlite:///{tmp_path / 'stock.db'}") as (engine, hooks):
            start = head_of(engine)
            url = f"http://127.0.0.1:{port}/batched"
            subscription, _ = await hooks.put("batched", url, None, SECRET, batch=7)
            receiver.down()  # a backlog builds up: then each POST carries a full batch
            await engine.set_stock("a", 10_000)
            await shop(engine, 30)
            receiver.up()
            await caught_up(engine, subscription)
            events, _ = await engine.event_page(start, 1000)
        nursery.cancel_scope.cancel()
    posted = batches_of([r for r in receiver.requests if r.body])
    assert max(len(b) for b in posted) == 7 and all(1 <= len(b) <= 7 for b in posted)
    first: dict[int, dict[str, Any]] = {}
    for batch in posted:
        for event in batch:
            first.setdefault(event["seq"], event)
    assert list(first) == [e.seq for e in events]  # every event, first arrivals in order
    assert list(first.values()) == [msgspec.to_builtins(e) for e in events]


async def test_a_failed_batch_is_posted_again_whole(tmp_path):
    receiver = Receiver(mode=500)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.run)
        async with delivering(f"sqlite:///{tmp_path / 'stock.db'}") as (engine, hooks):
            url = f"http://127.0.0.1:{port}/batched"
            subscription, _ = await hooks.put("batched", url, ("order.placed",), SECRET, batch=50)
            await engine.set_stock("a", 100)
            await shop(engine, 5)
            with trio.fail_after(30):
                while not subscription.failing:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            refused = len(receiver.requests)
            receiver.mode = "ok"
            await caught_up(engine, subscription)
        nursery.cancel_scope.cancel()
    posted = batches_of(receiver.requests)
    assert refused >= 2 and len(posted) > refused
    # the refused batch is posted again whole (the same body, signed afresh) until answered
    assert all(batch == posted[0] for batch in posted[: refused + 1])
    seqs = [e["seq"] for batch in posted[refused:] for e in batch]
    assert seqs == sorted(seqs) and len(seqs) == 5  # then the rest, in order, once
    assert {e["type"] for batch in posted for e in batch} == {"order.placed"}


async def test_batch_1_keeps_the_plain_body_and_a_bad_batch_is_refused(tmp_path):
    async with delivering(f"sqlite:///{tmp_path / 'stock.db'}") as (_, hooks):
        for bad in (0, 1001, True, 2.0):
            with pytest.raises(stockade.InvalidRequest, match="batch"):
                await hooks.put("h", "http://127.0.0.1:9/h", None, SECRET, batch=bad)  # type: ignore[arg-type]
        assert await hooks.all() == []
