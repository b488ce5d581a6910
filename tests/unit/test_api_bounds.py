"""Bounds on anonymous holds (``serve --public-holds``) through the ASGI app, on trio's mock
clock: units per line and hold length (422), open holds per address (429, counted by the
engine), requests per second per address (429), each 429 with Retry-After; the client address
from the peer, or from X-Forwarded-For / Forwarded only when trusted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio

import stockade
from stockade.api.app import ApiSettings, create_app
from stockade.api.bounds import HoldBounds, RateLimiter, client_of

TOKEN = "bounds-token"
BOUNDS = HoldBounds(max_units=3, max_hold_s=60, max_open=2, rate=2.0, burst=4)
Header = tuple[bytes, bytes]


async def make_app(engine: stockade.Engine, **bounds: Any) -> Any:
    settings = ApiSettings(admin_token=TOKEN, log_requests=False, public_holds=True,
                           bounds=HoldBounds(**{**stockade_bounds(), **bounds}))  # fmt: skip
    return create_app(engine, settings)


def stockade_bounds() -> dict[str, Any]:
    return {f: getattr(BOUNDS, f) for f in BOUNDS.__struct_fields__}


@pytest.fixture
async def engine() -> AsyncIterator[stockade.Engine]:
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("tee", 100)
        yield engine


@pytest.fixture
async def app(engine) -> AsyncIterator[Any]:
    app = await make_app(engine)
    async with app.test_app():
        yield app


async def call(
    app: Any, method: str, path: str, body: Any = None, *, peer: str = "192.0.2.10",
    headers: Sequence[Header] = (), chunked: bool = False, key: str | None = None,
) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """One request straight to the ASGI app from ``peer``: (status, headers, JSON body). A
    ``chunked`` POST /v1/orders goes to the Quart route instead of the fast path."""
    data = b"" if body is None else json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), *headers]
    if key is not None:
        head.append((b"authorization", f"Bearer {key}".encode()))
    if chunked:
        messages = [{"type": "http.request", "body": data[:3], "more_body": True},
                    {"type": "http.request", "body": data[3:], "more_body": False}]  # fmt: skip
    else:
        head.append((b"content-length", str(len(data)).encode()))
        messages = [{"type": "http.request", "body": data, "more_body": False}]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": head, "client": (peer, 5000), "server": ("127.0.0.1", 80),
        "extensions": {},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await trio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    answer = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], answer, json.loads(out) if out else None


def hold(qty: int = 1, seconds: int = 30) -> dict[str, Any]:
    return {"lines": [{"sku": "tee", "qty": qty}], "hold_seconds": seconds}


async def test_a_line_or_a_hold_over_its_cap_is_422_and_takes_nothing(app, engine, autojump_clock):
    for chunked in (False, True):  # the fast path and the Quart route
        status, _, problem = await call(app, "POST", "/v1/orders", hold(qty=4), chunked=chunked)
        assert status == 422 and "at most 3 units per line" in problem["detail"]
        status, _, problem = await call(app, "POST", "/v1/orders", hold(seconds=61),
                                        chunked=chunked)  # fmt: skip
        assert status == 422 and "at most 60 s" in problem["detail"]
        await trio.sleep(1)  # not the rate under test here
    assert (await engine.stock("tee")).reserved == 0
    status, _, order = await call(app, "POST", "/v1/orders", hold(qty=3, seconds=60))
    assert status == 201
    path = f"/v1/orders/{order['id']}"
    await trio.sleep(2)  # a full bucket again
    status, _, problem = await call(app, "PATCH", path, {"lines": [{"sku": "tee", "qty": 4}]})
    assert status == 422 and "units per line" in problem["detail"]
    status, _, problem = await call(app, "POST", f"{path}/extend", {"hold_seconds": 61})
    assert status == 422 and "at most 60 s" in problem["detail"]
    edited = await call(app, "PATCH", path, {"lines": [{"sku": "tee", "qty": 2}]})
    assert edited[0] == 200 and edited[2]["lines"] == {"tee": 2}
    assert (await call(app, "POST", f"{path}/extend", {"hold_seconds": 60}))[0] == 200
    # a key is never bounded
    keyed = await call(app, "POST", "/v1/orders", hold(qty=50, seconds=3600), key=TOKEN)
    assert keyed[0] == 201


async def test_open_holds_per_address_are_429_with_retry_after_until_one_is_freed(
    engine, autojump_clock
):
    async with (app := await make_app(engine, rate=100.0, burst=100)).test_app():
        await _open_holds(app, engine)


async def _open_holds(app: Any, engine: stockade.Engine) -> None:
    first = (await call(app, "POST", "/v1/orders", hold(seconds=30)))[2]
    await trio.sleep(10)
    second = (await call(app, "POST", "/v1/orders", hold(seconds=60), chunked=True))[2]
    for chunked in (False, True):
        status, headers, problem = await call(app, "POST", "/v1/orders", hold(), chunked=chunked)
        assert status == 429 and problem["type"] == "/problems/too-many-holds"
        assert headers["retry-after"] == "20"  # when the first hold lapses
    assert (await engine.stock("tee")).reserved == 2
    other = await call(app, "POST", "/v1/orders", hold(), peer="198.51.100.3")
    assert other[0] == 201  # another address has its own count
    assert (await call(app, "POST", f"/v1/orders/{first['id']}/cancel"))[0] == 200
    third = await call(app, "POST", "/v1/orders", hold())
    assert third[0] == 201
    assert (await call(app, "POST", f"/v1/orders/{second['id']}/confirm", key=TOKEN))[0] == 200
    await trio.sleep(31)  # the third lapses
    assert (await engine.get_order(third[2]["id"])).status == "expired"
    assert (await call(app, "POST", "/v1/orders", hold()))[0] == 201
    assert (await call(app, "POST", "/v1/orders", hold()))[0] == 201
    assert (await call(app, "POST", "/v1/orders", hold()))[0] == 429


async def test_requests_per_second_per_address_are_429_with_retry_after(
    app, engine, autojump_clock
):
    order = (await call(app, "POST", "/v1/orders", hold()))[2]
    path = f"/v1/orders/{order['id']}"
    answers = [
        await call(app, "PATCH", path, {"lines": [{"sku": "tee", "qty": 1}]}),
        await call(app, "POST", f"{path}/extend", {"hold_seconds": 30}),
        await call(app, "POST", "/v1/orders", hold(), chunked=True),  # the burst of 4 is spent
        await call(app, "POST", f"{path}/cancel"),
        await call(app, "POST", "/v1/orders", hold()),
        await call(app, "PATCH", path, {"lines": [{"sku": "tee", "qty": 1}]}),
    ]
    assert [status for status, _, _ in answers] == [200, 200, 201, 429, 429, 429]
    _, headers, problem = answers[3]
    assert problem["type"] == "/problems/too-many-requests" and headers["retry-after"] == "1"
    assert (await engine.get_order(order["id"])).status == "reserved"  # the 429 did nothing
    assert (await call(app, "POST", f"{path}/cancel", key=TOKEN))[0] == 200  # keys: no bound
    assert (await call(app, "POST", "/v1/orders", hold(), peer="198.51.100.3"))[0] == 201
    await trio.sleep(0.5)  # 2 a second: one token back
    assert (await call(app, "POST", "/v1/orders", hold()))[0] == 201
    assert (await call(app, "POST", "/v1/orders", hold()))[0] == 429


async def test_forwarded_addresses_count_only_when_trusted(engine, autojump_clock):
    spoofed = [[(b"x-forwarded-for", f"10.9.8.{i}".encode())] for i in range(3)]
    plain = await make_app(engine)
    async with plain.test_app():  # without the flag, the header is the client's to invent
        statuses = [(await call(plain, "POST", "/v1/orders", hold(), headers=h))[0]
                    for h in spoofed]  # fmt: skip
        assert statuses == [201, 201, 429]  # one peer: 2 open holds, whatever it claims
    await trio.sleep(100)  # every hold lapses
    trusting = await make_app(engine, trust_forwarded="x-forwarded-for")
    async with trusting.test_app():
        statuses = [(await call(trusting, "POST", "/v1/orders", hold(), headers=h))[0]
                    for h in spoofed * 2]  # fmt: skip
        assert statuses == [201] * 6  # three clients behind one proxy, two holds each
        assert (await call(trusting, "POST", "/v1/orders", hold(), headers=spoofed[0]))[0] == 429


@pytest.mark.parametrize(
    ("headers", "trust", "trusted", "client"),
    [
        ([], "", (), "192.0.2.10"),
        ([(b"x-forwarded-for", b"6.6.6.6")], "", (), "192.0.2.10"),
        ([(b"x-forwarded-for", b"6.6.6.6, 203.0.113.5")], "x-forwarded-for", (), "203.0.113.5"),
        ([(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.5, 10.0.0.2")],
         "x-forwarded-for", ("10.0.0.0/8",), "203.0.113.5"),
        ([(b"x-forwarded-for", b"10.0.0.3, 10.0.0.2")], "x-forwarded-for", ("10.0.0.0/8",),
         "10.0.0.3"),
        ([(b"forwarded", b'for=6.6.6.6, for="[2001:db8:1:2::9]:4711";proto=https')],
         "forwarded", (), "2001:db8:1:2::/64"),
        ([(b"Forwarded", b"for=203.0.113.5:80;by=10.0.0.1")], "forwarded", (), "203.0.113.5"),
        ([(b"forwarded", b"for=6.6.6.6")], "x-forwarded-for", (), "192.0.2.10"),
        ([(b"x-forwarded-for", b"6.6.6.6")], "forwarded", (), "192.0.2.10"),
    ],
)  # fmt: skip
def test_the_client_address(headers, trust, trusted, client):
    import ipaddress

    networks = tuple(ipaddress.ip_network(n) for n in trusted)
    assert client_of("192.0.2.10", headers, trust, networks) == client


def test_an_ipv6_client_is_keyed_by_its_64_and_a_mapped_ipv4_by_itself():
    assert client_of("2001:db8::1", []) == client_of("2001:db8::ffff", []) == "2001:db8::/64"
    assert client_of("::ffff:192.0.2.1", []) == "192.0.2.1"
    assert client_of(None, []) == "unknown"


def test_rate_buckets_are_forgotten_once_refilled_and_bounded_in_number():
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, max_keys=3, clock=lambda: now[0])
    for i in range(3):
        assert limiter.admit(f"a{i}") == 0.0
    assert len(limiter) == 3
    assert limiter.admit("a3") == 0.0  # past max_keys: the least recently seen goes
    assert len(limiter) == 3
    now[0] = 10.0  # every bucket refilled
    limiter.admit("b")
    limiter.admit("b")
    assert len(limiter) <= 2  # idle ones dropped as calls go by
    assert limiter.admit("b") == pytest.approx(1.0)  # spent: a second to the next token


async def test_the_document_declares_the_429_only_where_anonymous_callers_may_go(app, engine):
    paths = app.config["STOCKADE_OPENAPI"]["paths"]
    public = [("/v1/orders", "post"), ("/v1/orders/{order_id}", "patch"),
              ("/v1/orders/{order_id}/extend", "post"),
              ("/v1/orders/{order_id}/cancel", "post")]  # fmt: skip
    for path, method in public:
        answer = paths[path][method]["responses"]["429"]
        assert "Retry-After" in answer["headers"] and "too-many-holds" in answer["description"]
    assert "429" not in paths["/v1/orders/{order_id}/confirm"]["post"]["responses"]
    closed = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False))
    assert (
        "429" not in closed.config["STOCKADE_OPENAPI"]["paths"]["/v1/orders"]["post"]["responses"]
    )
