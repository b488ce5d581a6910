"""POST /v1/orders at the ASGI level: it must answer exactly as the Quart route does.

A request sent without Content-Length (chunked) is passed to the Quart route, so sending the
same order both ways compares the two paths over one engine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import stockade
from stockade.api.app import ApiSettings, create_app

TOKEN = "fast-token"


@pytest.fixture
async def app() -> AsyncIterator[Any]:
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("tee", 5)
        app = create_app(engine, ApiSettings(admin_token=TOKEN, max_body_bytes=4096,
                                             log_requests=False))  # fmt: skip
        app.config["TEST_ENGINE"] = engine
        async with app.test_app():
            yield app


async def asgi_post(
    app, body: bytes, *, chunked: bool = False, headers=(), key: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    """POST /v1/orders straight to the ASGI app, with ``key`` if any: (status, headers, JSON
    body)."""
    head = [(b"content-type", b"application/json"), *headers]
    if key is not None:
        head.append((b"authorization", f"Bearer {key}".encode()))
    if chunked:
        messages = [{"type": "http.request", "body": body[:5], "more_body": True},
                    {"type": "http.request", "body": body[5:], "more_body": False}]  # fmt: skip
    else:
        head.append((b"content-length", str(len(body)).encode()))
        messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = await asgi_call(app, head, messages)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], answer_headers, json.loads(body_out)


async def asgi_call(app, head, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST /v1/orders with ``head`` to the ASGI app, the client sending ``messages``: what the
    app sent back."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/orders", "raw_path": b"/v1/orders", "query_string": b"",
        "root_path": "", "headers": head, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
        "extensions": {},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await trio.sleep_forever()  # the client waits for its answer

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def order(lines, hold_seconds=None) -> bytes:
    return json.dumps({"lines": [{"sku": s, "qty": q} for s, q in lines],
                       "hold_seconds": hold_seconds}).encode()  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        order([("nope", 1)]),  # unknown product: 404
        order([("tee", 99)]),  # out of stock: 409 with shortages
        order([("tee", 1)], hold_seconds=10**9),  # hold too long: 422
        order([("tee", 1), ("tee", 1)]),  # duplicate lines: 422
        b'{"lines": [{"sku": "tee", "qty": 0}]}',  # schema violation: 422
        b'{"lines": [',  # malformed: 400
        b'{"lines": [{"sku": "tee", "qty": 1}], "location": "nowhere"}',  # unknown location: 404
        b'{"lines": [{"sku": "tee", "qty": 1}], "channel": "nowhere"}',  # unknown channel: 404
        b'{"lines": [{"sku": "tee", "qty": 1}], "location": "a b"}',  # bad location id: 422
    ],
)
async def test_errors_match_the_quart_route(app, body):
    fast = await asgi_post(app, body)
    slow = await asgi_post(app, body, chunked=True)
    assert fast[0] == slow[0] and 400 <= fast[0] < 500
    assert fast[1]["content-type"] == slow[1]["content-type"] == "application/problem+json"
    assert fast[2] == slow[2]
    assert (await app.config["TEST_ENGINE"].stock("tee")).available == 5  # nothing changed


async def test_placed_orders_match_the_quart_route(app):
    fast = await asgi_post(app, order([("tee", 1)], 60), headers=[(b"x-request-id", b"r-1")])
    slow = await asgi_post(app, order([("tee", 1)], 60), chunked=True)
    assert fast[0] == slow[0] == 201
    assert fast[1]["content-type"] == slow[1]["content-type"] == "application/json"
    assert fast[1]["x-request-id"] == "r-1" and slow[1]["x-request-id"]
    assert fast[2].keys() == slow[2].keys()
    assert fast[2]["status"] == slow[2]["status"] == "reserved"
    assert (await app.config["TEST_ENGINE"].stock("tee")).reserved == 2


async def test_location_and_channel_pass_through_the_fast_path(app):
    engine = app.config["TEST_ENGINE"]
    await engine.set_location("shop", priority=-1)  # taken from first, unless pinned
    await engine.set_stock("tee", 2, location="shop")
    await engine.set_channel("web", ["default"])
    for where in ({"location": "default"}, {"channel": "web"}):
        body = json.dumps({"lines": [{"sku": "tee", "qty": 1}], **where}).encode()
        fast = await asgi_post(app, body)
        slow = await asgi_post(app, body, chunked=True)
        assert fast[0] == slow[0] == 201
        for placed in (fast[2], slow[2]):
            assert placed["allocations"] == {"tee": {"default": 1}}
            assert (placed["location"], placed["channel"]) == (
                where.get("location"), where.get("channel"),
            )  # fmt: skip
    assert [level.on_hand for level in await engine.stock_by_location("tee")] == [2, 1]


async def test_idempotency_key_on_the_fast_path(app):
    key = [(b"idempotency-key", b"cart-7")]
    first = await asgi_post(app, order([("tee", 2)]), headers=key)
    again = await asgi_post(app, order([("tee", 2)]), headers=key)
    assert first[2]["id"] == again[2]["id"]
    conflict = await asgi_post(app, order([("tee", 1)]), headers=key)
    assert conflict[0] == 409 and conflict[2]["type"] == "/problems/idempotency-conflict"
    assert (await app.config["TEST_ENGINE"].stock("tee")).on_hand == 3


async def test_an_unexpected_error_is_a_500_with_a_request_id(app, monkeypatch, caplog):
    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.config["STOCKADE_ENGINE"], "place_order", broken)
    status, headers, body = await asgi_post(app, order([("tee", 1)]))
    assert status == 500 and headers["content-type"] == "application/problem+json"
    assert "boom" not in json.dumps(body) and body["request_id"] in body["detail"]
    assert "unexpected error" in caplog.text


async def test_the_fast_path_is_counted_in_metrics(app):
    await asgi_post(app, order([("tee", 1)]))
    await asgi_post(app, order([("tee", 99)]))
    client = app.test_client()
    metrics = await (await client.get("/metrics")).get_data(as_text=True)
    assert 'stockade_http_requests_total{route="/v1/orders",status="201"} 1.0' in metrics
    assert 'stockade_http_requests_total{route="/v1/orders",status="409"} 1.0' in metrics
    assert 'stockade_order_latency_seconds_count{outcome="placed"} 1.0' in metrics


async def test_the_500_of_both_paths_quotes_the_requests_own_id(app, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.config["STOCKADE_ENGINE"], "place_order", broken)
    mine = [(b"x-request-id", b"req-500")]
    for chunked in (False, True):
        status, headers, body = await asgi_post(app, order([("tee", 1)]), chunked=chunked,
                                                headers=mine)  # fmt: skip
        assert status == 500 and headers["x-request-id"] == body["request_id"] == "req-500"


@pytest.mark.parametrize("content_length", [True, False], ids=["fast", "quart"])
async def test_a_client_gone_mid_body_places_nothing(app, content_length):
    """The body so far is a whole order, but the client went away before the rest it promised:
    nobody is answered and nothing is placed."""
    body = order([("tee", 1)])
    head = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {TOKEN}".encode())]
    if content_length:
        head.append((b"content-length", str(len(body) + 10).encode()))
    sent = await asgi_call(app, head, [{"type": "http.request", "body": body, "more_body": True},
                                       {"type": "http.disconnect"}])  # fmt: skip
    assert sent == []
    assert (await app.config["TEST_ENGINE"].stock("tee")).available == 5


@pytest.mark.parametrize("key", [None, "nope", "sk_" + "0" * 16 + "_" + "s" * 43])
async def test_the_fast_path_refuses_a_missing_or_invalid_key_as_quart_does(app, key):
    fast = await asgi_post(app, order([("tee", 1)]), key=key)
    slow = await asgi_post(app, order([("tee", 1)]), key=key, chunked=True)
    assert fast[0] == slow[0] == 401
    assert fast[1]["www-authenticate"] == slow[1]["www-authenticate"]
    assert fast[1]["www-authenticate"].startswith("Bearer")
    assert fast[2] == slow[2] and fast[2]["type"] == "/problems/unauthorized"
    assert (await app.config["TEST_ENGINE"].stock("tee")).available == 5


async def test_a_key_works_on_the_fast_path_until_it_is_revoked(app):
    record, key = await app.config["STOCKADE_KEYS"].create("service", "shop")
    assert (await asgi_post(app, order([("tee", 1)]), key=key))[0] == 201
    await app.config["STOCKADE_KEYS"].revoke(record.id)
    assert (await asgi_post(app, order([("tee", 1)]), key=key))[0] == 401
    assert (await app.config["TEST_ENGINE"].stock("tee")).on_hand == 4


async def test_public_holds_on_the_fast_path_are_holds_only():
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("tee", 5)
        settings = ApiSettings(admin_token=TOKEN, log_requests=False, public_holds=True)
        app = create_app(engine, settings)
        async with app.test_app():
            held = await asgi_post(app, order([("tee", 1)], 60), key=None)
            slow = await asgi_post(app, order([("tee", 1)], 60), key=None, chunked=True)
            assert held[0] == slow[0] == 201 and held[2]["status"] == "reserved"
            bought = await asgi_post(app, order([("tee", 1)]), key=None)
            slow = await asgi_post(app, order([("tee", 1)]), key=None, chunked=True)
            assert bought[0] == slow[0] == 401 and bought[2] == slow[2]
            assert "holds only" in bought[2]["detail"]
            assert await engine.stock("tee") == stockade.StockLevel("tee", 5, 2, 3)
