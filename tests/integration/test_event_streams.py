"""Server-Sent Events over real HTTP (hypercorn on loopback): a client that disconnects and
resumes misses nothing, product streams send the current level then changes, streams are
bounded, and a stopping server ends them cleanly, in this process and as ``stockade serve``."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

import stockade
from bench.server import Server
from stockade import MemoryStore
from stockade.api.app import ApiSettings, create_app
from stockade.api.feed import FeedService, FeedSettings
from tests.integration.feedhttp import get, serving

TOKEN = "stream-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(store=MemoryStore(), durability="durable") as engine:
        await engine.set_stock("a", 1_000_000)
        yield engine


def app_for(engine: stockade.Engine, **feed: Any) -> Any:
    settings = FeedSettings(**{"keepalive_s": 0.05, "product_interval_s": 0.05, **feed})
    return create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False, feed=settings))


async def test_a_client_that_disconnects_and_resumes_misses_nothing(engine):
    app = app_for(engine)
    stop = trio.Event()
    got: list[int] = []

    async def shoppers() -> None:
        while not stop.is_set():
            await engine.place_order({"a": 1})
            await trio.lowlevel.checkpoint()

    async with serving(app) as url, trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(shoppers)
        for attempt in range(6):  # connect, read a while, hang up, resume
            headers = {**ADMIN, "Last-Event-ID": str(got[-1])} if got else ADMIN
            query = "" if got else "?after=0"
            async with get(url, f"/v1/events/stream{query}", headers) as response:
                assert response.status == 200
                assert response.headers["content-type"] == "text/event-stream"
                while len(got) < 40 * (attempt + 1):  # then the client goes away mid-stream
                    message = await response.message()
                    assert message is not None
                    assert message.fields["event"] == message.data["type"]
                    assert message.id == message.data["seq"]
                    got.append(message.id)
        stop.set()
    written, head = await engine.event_page(0, 1000)
    assert got == list(range(1, len(got) + 1))  # in order, no gap, no duplicate
    assert [e.seq for e in written[: len(got)]] == got and head > len(got) >= 240


async def test_a_product_stream_sends_the_current_level_then_changes(engine):
    app = app_for(engine, product_interval_s=0.01)
    async with serving(app) as url, get(url, "/v1/products/a/stream") as response:
        assert response.status == 200
        levels: list[dict[str, Any]] = []
        while not levels or levels[-1]["on_hand"] != 999_995:
            message = await response.message()
            assert message is not None and message.fields["event"] == "stock"
            levels.append(message.data)
            if len(levels) == 1:
                await engine.adjust_stock("a", -5)
    assert levels[0] == {"sku": "a", "on_hand": 1_000_000, "reserved": 0, "available": 1_000_000,
                         "on_sale": True}  # fmt: skip
    assert levels[-1]["available"] == 999_995 and levels[-1]["on_sale"] is True


async def test_streams_past_the_bound_are_refused_until_one_ends(engine):
    app = app_for(engine, max_streams=2)
    service: FeedService = app.config["STOCKADE_FEED"]
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with (
            get(url, "/v1/products/a/stream") as one,
            get(url, "/v1/events/stream", ADMIN) as two,
        ):
            assert one.status == two.status == 200
            refused = await client.get("/v1/products/a/stream")
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
            assert refused.json()["type"] == "/problems/too-many-streams"
            also = await client.get("/v1/events/stream", headers=ADMIN)
            assert also.status_code == 503
        with trio.fail_after(10):  # the server notices the clients left at its next write
            while len(service.streams):  # noqa: ASYNC110 (no event for "a client left")
                await trio.sleep(0.01)
        async with get(url, "/v1/products/a/stream") as again:
            assert again.status == 200
        metrics = (await client.get("/metrics")).text
        assert "stockade_event_streams_refused_total 2.0" in metrics


async def test_stopping_ends_open_streams_cleanly(engine):
    app = app_for(engine, keepalive_s=3600.0)
    service: FeedService = app.config["STOCKADE_FEED"]
    ended: list[str] = []
    async with serving(app) as url:

        async def listen(path: str, headers: dict[str, str]) -> None:
            async with get(url, path, headers) as response:
                await response.body()  # raises if the body does not end cleanly
                assert response.ended
            ended.append(path)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen, "/v1/products/a/stream", {})
            nursery.start_soon(listen, "/v1/events/stream", ADMIN)
            with trio.fail_after(10):
                while len(service.streams) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            service.stop_streams()
    assert sorted(ended) == ["/v1/events/stream", "/v1/products/a/stream"]


async def test_sigterm_ends_streams_without_waiting_for_the_grace_period(tmp_path):
    server = Server(tmp_path, TOKEN)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            put = await client.put("/v1/products/a", json={"on_hand": 5}, headers=ADMIN)
            assert put.status_code == 201
            seen: list[str] = []
            ended: list[str] = []

            async def listen(path: str, headers: dict[str, str]) -> None:
                async with get(server.url, path, headers) as response:
                    assert response.status == 200
                    while (message := await response.message()) is not None:
                        seen.append(message.fields["event"])
                    assert response.ended  # the body ended: not cut at the grace period's end
                ended.append(path)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen, "/v1/products/a/stream", {})
                nursery.start_soon(listen, "/v1/events/stream?after=0", ADMIN)
                with trio.fail_after(30):
                    while len(seen) < 3:  # noqa: ASYNC110 (the level, and the two events)
                        await trio.sleep(0.01)
                server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        code = await trio.to_thread.run_sync(server.process.wait, 30)  # type: ignore[union-attr]
        assert code == 0
        assert sorted(ended) == ["/v1/events/stream?after=0", "/v1/products/a/stream"]
        assert '"event":"stopped"' in server.log.read_text()
    finally:
        server.kill()
