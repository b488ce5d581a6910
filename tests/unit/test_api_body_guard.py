"""BodyGuard between a fake hypercorn connection and small ASGI apps (and the real one).

The fake does what hypercorn's HTTP/1.1 protocol does in the calls the guard cares about: the
app's ``receive`` reads a bounded queue the client's body goes into, and the response's last
message hands the app ``http.disconnect`` through that queue, then does the connection's
bookkeeping across a checkpoint (recycle or close).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import stockade
from stockade.api.accounting import Accounting
from stockade.api.app import ApiSettings, create_app
from stockade.api.asgi import Message
from stockade.api.body_guard import BodyGuard
from stockade.api.metrics import Metrics
from stockade.api.port import LocalEngine
from stockade.engine.engine import Engine

DRAIN_BYTES = 1000
DRAIN_S = 2.0
#: how long the fake connection waits for room in a full queue before it gives up
STUCK_S = 5.0


class FakeConnection:
    """One exchange's view of hypercorn: :meth:`client_sends` puts body messages in the app's
    queue (of ``capacity`` messages), :meth:`receive` and :meth:`send` are the app's."""

    def __init__(self, capacity: int = 10) -> None:
        self.to_app, self._from_client = trio.open_memory_channel[Message](capacity)
        self.sent: list[Message] = []
        self.done = False  # the bookkeeping after the last message ran to its end

    async def client_sends(self, chunks: list[bytes], *, complete: bool = True) -> None:
        for i, chunk in enumerate(chunks):
            more = not complete or i < len(chunks) - 1
            await self.to_app.send({"type": "http.request", "body": chunk, "more_body": more})

    async def receive(self) -> Message:
        return await self._from_client.receive()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            with trio.move_on_after(STUCK_S):  # a regression fails the test, never hangs it
                await self.to_app.send({"type": "http.disconnect"})
                await trio.lowlevel.checkpoint()  # hypercorn's close, or its idle timer's restart
                self.done = True

    @property
    def start(self) -> Message:
        return next(m for m in self.sent if m["type"] == "http.response.start")

    @property
    def closes(self) -> bool:
        return (b"connection", b"close") in self.start["headers"]


def scope(method: str = "POST", path: str = "/anything") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
        "extensions": {},
    }  # fmt: skip


async def answer_at_once(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers 413 without reading the body."""
    await send({"type": "http.response.start", "status": 413, "headers": []})
    await send({"type": "http.response.body", "body": b"too large"})


async def read_then_answer(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def guard(engine: Engine) -> Callable[[Any], BodyGuard]:
    """Wraps an app in a guard with small bounds."""

    def wrap(app: Any) -> BodyGuard:
        accounting = Accounting(Metrics(LocalEngine(engine)), log_requests=False)
        return BodyGuard(app, accounting, max_drain_bytes=DRAIN_BYTES, drain_s=DRAIN_S)

    return wrap


async def test_an_early_answer_waits_for_the_rest_of_the_body_and_keeps_the_connection(guard):
    connection = FakeConnection()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(guard(answer_at_once), scope(), connection.receive, connection.send)
        await trio.testing.wait_all_tasks_blocked()
        assert connection.sent == []  # nothing answered while the body is on its way
        await connection.client_sends([b"x" * 300, b"x" * 300])
    assert connection.start["status"] == 413 and not connection.closes
    assert connection.done


async def test_past_max_drain_bytes_the_answer_says_close(guard):
    connection = FakeConnection(capacity=100)
    await connection.client_sends([b"x" * 400] * 5, complete=False)  # 2000 bytes and counting
    await guard(answer_at_once)(scope(), connection.receive, connection.send)
    assert connection.start["status"] == 413 and connection.closes
    assert connection.done


async def test_a_client_silent_mid_body_gets_the_answer_after_drain_s(guard, autojump_clock):
    connection = FakeConnection()
    await connection.client_sends([b"x" * 10], complete=False)
    started = trio.current_time()
    await guard(answer_at_once)(scope(), connection.receive, connection.send)
    assert trio.current_time() - started == pytest.approx(DRAIN_S)
    assert connection.closes and connection.done


async def test_the_last_message_finds_room_for_the_disconnect_in_a_full_queue(guard):
    """The client filled the app's queue with body the app never reads: hypercorn's
    http.disconnect must still get in, or the connection would never be closed."""
    connection = FakeConnection(capacity=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.client_sends, [b"x" * 600] * 10)
        await trio.testing.wait_all_tasks_blocked()  # the queue is full, the client waits
        await guard(answer_at_once)(scope(), connection.receive, connection.send)
        nursery.cancel_scope.cancel()
    assert connection.closes and connection.done


async def test_send_finishes_even_when_the_app_cancels_itself_meanwhile(guard):
    """quart-trio cancels the request's tasks when it receives http.disconnect, which hypercorn
    hands it from inside the response's last send: that send must run to its end anyway."""

    async def quart_like(scope: Any, receive: Any, send: Any) -> None:
        body_read = trio.Event()

        async def handle_messages() -> None:
            while (message := await receive())["type"] != "http.disconnect":
                if not message.get("more_body", False):
                    body_read.set()
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(handle_messages)
            await body_read.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            await trio.sleep_forever()

    unguarded, guarded = FakeConnection(), FakeConnection()
    for connection in (unguarded, guarded):
        await connection.client_sends([b"{}"])
    await quart_like(scope(), unguarded.receive, unguarded.send)
    await guard(quart_like)(scope(), guarded.receive, guarded.send)
    assert not unguarded.done  # the fault, without the guard
    assert guarded.done and not guarded.closes


@pytest.mark.parametrize(
    ("app", "status"), [(read_then_answer, 503), (answer_at_once, 413)], ids=["reading", "drain"]
)
async def test_stop_ends_what_waits_for_a_body(guard, autojump_clock, app, status):
    """An app still waiting for its body is refused (503); the drain behind an early answer
    is cut short. Either way the answer says close, and comes at once (the mock clock)."""
    connection = FakeConnection()
    the_guard = guard(app)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(the_guard, scope(), connection.receive, connection.send)
        await connection.client_sends([b"{"], complete=False)
        await trio.testing.wait_all_tasks_blocked()
        stopped = trio.current_time()
        the_guard.stop()
    assert trio.current_time() == stopped
    assert connection.start["status"] == status and connection.closes
    if status == 503:
        assert (b"retry-after", b"1") in connection.start["headers"]
    assert connection.done


async def test_stop_lets_requests_with_their_body_finish(guard):
    release = trio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await release.wait()  # the engine at work
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"placed"})

    connection = FakeConnection()
    the_guard = guard(slow)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(the_guard, scope(), connection.receive, connection.send)
        await connection.client_sends([b"{}"])
        await trio.testing.wait_all_tasks_blocked()
        the_guard.stop()
        await trio.testing.wait_all_tasks_blocked()
        assert connection.sent == []
        release.set()
    assert connection.start["status"] == 201 and not connection.closes


@pytest.fixture
async def app() -> AsyncIterator[Any]:
    async with stockade.open_engine(None) as engine:
        settings = ApiSettings(admin_token="t", max_body_bytes=100, log_requests=False,
                               max_drain_bytes=DRAIN_BYTES, drain_s=DRAIN_S)  # fmt: skip
        app = create_app(engine, settings)
        async with app.test_app():
            yield app


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/products/tee"])
async def test_quart_and_the_fast_path_answer_an_oversized_body_after_reading_it(app, path):
    """The real app: 413 from Content-Length (the fast path hands it to Quart), drained."""
    connection = FakeConnection()
    request = scope("POST" if path == "/v1/orders" else "PUT", path)
    request["headers"] = [(b"content-type", b"application/json"), (b"content-length", b"600"),
                          (b"authorization", b"Bearer t")]  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, request, connection.receive, connection.send)
        await connection.client_sends([b"x" * 300, b"x" * 300])
    assert connection.start["status"] == 413 and not connection.closes
    assert connection.done


async def test_a_cancelled_app_still_finds_room_for_the_disconnect(guard, autojump_clock):
    """Even when the last message is sent from a cancelled task (the server's grace period is
    over), hypercorn's http.disconnect must find room, or its shielded send would wait forever."""

    async def answer_then_get_cancelled(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            await send({"type": "http.response.body", "body": b"too large"})

    connection = FakeConnection(capacity=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.client_sends, [b"x" * 600] * 10)
        await trio.testing.wait_all_tasks_blocked()
        await guard(answer_then_get_cancelled)(scope(), connection.receive, connection.send)
        nursery.cancel_scope.cancel()
    assert connection.closes and connection.done
