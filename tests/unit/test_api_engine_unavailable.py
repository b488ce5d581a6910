"""An engine that cannot be reached (a front's, design.md §12): 503 ``engine-unavailable`` with
``Retry-After`` from every route, never a hang or a 500; the front keeps running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import trio

import stockade
from stockade.api.app import ApiSettings, create_app
from stockade.api.keys import ApiKeys
from stockade.api.port import LocalEngine
from stockade.api.sse import EventStream, ProductWatch, Streams
from stockade.engine.engine import Engine
from stockade.engine.models import Event
from stockade.errors import EngineUnavailable

TOKEN = "t"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
GONE = "the engine did not answer within 3 s"


class Unreachable(LocalEngine):
    """An engine port whose calls fail as a remote engine's do while it cannot be reached:
    every call, once ``down`` is set."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.down = False
        for name in ("place_order", "confirm", "cancel", "get_order", "stock", "set_stock",
                     "event_page", "list_orders", "movements", "change_order"):  # fmt: skip
            setattr(self, name, self._guarded(getattr(engine, name)))

    def _guarded(self, method: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                await trio.lowlevel.checkpoint()
                raise EngineUnavailable(GONE)
            return await method(*args, **kwargs)

        return call

    async def statistics(self) -> Any:
        if self.down:
            raise EngineUnavailable(GONE)
        return await super().statistics()

    async def feed_head(self) -> int | None:
        if self.down:
            raise EngineUnavailable(GONE)
        return await super().feed_head()

    async def has_product(self, sku: str) -> bool:
        if self.down:
            raise EngineUnavailable(GONE)
        return await super().has_product(sku)


@pytest.fixture
async def shop() -> AsyncIterator[tuple[Unreachable, Any]]:
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 10)
        port = Unreachable(engine)
        app = create_app(port, ApiSettings(admin_token=TOKEN, log_requests=False))
        async with app.test_app() as test_app:
            yield port, test_app.test_client()


async def unavailable(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = await response.get_json()
    assert response.status_code == 503, body
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"] == "1"
    assert body["type"] == "/problems/engine-unavailable" and body["detail"] == GONE
    return body


async def test_every_kind_of_route_answers_503_engine_unavailable(shop):
    port, client = shop
    placed = await client.post("/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]},
                               headers=ADMIN)  # fmt: skip
    assert placed.status_code == 201
    order_id = (await placed.get_json())["id"]
    port.down = True
    await unavailable(
        await client.post("/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]}, headers=ADMIN)
    )  # fmt: skip (the fast path)
    await unavailable(await client.get("/v1/products/a"))
    await unavailable(await client.put("/v1/products/a", json={"on_hand": 3}, headers=ADMIN))
    await unavailable(await client.get(f"/v1/orders/{order_id}"))
    await unavailable(await client.post(f"/v1/orders/{order_id}/cancel", headers=ADMIN))
    await unavailable(await client.get("/v1/orders", headers=ADMIN))
    await unavailable(await client.get("/v1/events", headers=ADMIN))
    await unavailable(await client.get("/v1/events/stream", headers=ADMIN))
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and (await ready.get_json())["ready"] is False
    assert (await client.get("/healthz")).status_code == 200
    metrics = await client.get("/metrics")  # the front's own series, without the engine's
    assert metrics.status_code == 200
    assert "stockade_http_requests_total" in await metrics.get_data(as_text=True)
    port.down = False
    assert (await client.get(f"/v1/orders/{order_id}")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_the_problem_type_is_in_the_openapi_document(shop):
    _, client = shop
    document = await (await client.get("/openapi.json")).get_json()
    described = document["paths"]["/v1/orders"]["post"]["responses"]["503"]["description"]
    assert "engine-unavailable" in described


async def test_key_refresh_keeps_the_keys_while_the_engine_is_away(autojump_clock):
    class Table:
        failing = False

        async def keys(self) -> list[Any]:
            await trio.lowlevel.checkpoint()
            if self.failing:
                raise EngineUnavailable(GONE)
            return []

    from stockade.api.auth import KeyRing

    table = Table()
    keys = ApiKeys(table, KeyRing(TOKEN), refresh_s=1.0)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(keys.run)
        table.failing = True
        await trio.sleep(5)  # refreshes fail, the task goes on
        table.failing = False
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert len(keys.guard) == 0  # read, failed, read again: never crashed


async def test_the_product_watch_waits_out_an_engine_away(autojump_clock):
    async with stockade.open_engine(store=stockade.MemoryStore(), durability="durable") as engine:
        port = Unreachable(engine)
        port.down = True
        watch = ProductWatch(port, retry_s=1.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(watch.run)
            await trio.sleep(3)  # it retries, it does not crash
            port.down = False
            await trio.sleep(2)
            assert watch.cursor == 0  # following the feed from its head
            nursery.cancel_scope.cancel()


class LostReader:
    """A remote feed reader whose link is lost after ``events`` events; notes its closing."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.cursor = 0
        self.closed = False

    def __aiter__(self) -> LostReader:
        return self

    async def __anext__(self) -> Event:
        await trio.lowlevel.checkpoint()
        if not self.events:
            raise EngineUnavailable("the connection to the engine was lost")
        event = self.events.pop(0)
        self.cursor = event.seq
        return event

    async def aclose(self) -> None:
        self.closed = True


async def test_an_event_stream_ends_when_the_engine_is_lost_and_closes_its_reader():
    event = Event(seq=7, type="stock.changed", at=datetime.now(UTC),
                  data={"stock_level": {"sku": "a"}})  # fmt: skip
    reader = LostReader([event])
    registry = Streams(max_streams=10, keepalive_s=100.0, lifetime_s=1000.0)
    registry.admit()
    stream = EventStream(registry, reader)
    sent = [message async for message in stream]
    assert len(sent) == 2 and b"id: 7" in sent[1]  # the retry hint, the event, then the end
    assert reader.closed and len(registry) == 0  # its subscription stopped, its place freed
