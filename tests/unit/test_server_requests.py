"""FinishesRequests: every request ends cleanly under hypercorn, even one refused early.

The fake server here delivers messages as hypercorn does: the body, then ``http.disconnect``
only once the answer has ended."""

from __future__ import annotations

from typing import Any

import trio
import trio.lowlevel

from stockade.api.fastpath import Message
from stockade.api.server import FinishesRequests

SCOPE = {"type": "http", "method": "POST", "path": "/", "headers": []}


class FakeServer:
    """hypercorn's side of one request: ``chunks`` of body, then a disconnect once the
    answer's last message was sent. Records what was read and sent, in order."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.inbox: list[Message] = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        self.log: list[str] = []
        self.ended = trio.Event()

    async def receive(self) -> Message:
        await trio.lowlevel.checkpoint()
        if self.inbox:
            message = self.inbox.pop(0)
            self.log.append(f"read {len(message['body'])}")
            return message
        await self.ended.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await trio.lowlevel.checkpoint()  # hypercorn's bookkeeping is cancellable here
        self.log.append(message["type"])
        if message["type"] == "http.response.start":
            self.headers = message["headers"]
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.ended.set()


async def refuse(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers 401 without reading the body, while a task of its own reads the
    request's messages until the disconnect (as quart-trio does), then is cancelled."""
    async with trio.open_nursery() as nursery:

        async def read_messages() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(read_messages)
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"no", "more_body": False})
        await trio.sleep_forever()  # until the disconnect cancels the nursery


async def test_an_early_answer_reads_the_rest_of_the_body_first(autojump_clock):
    server = FakeServer([b"x" * 10, b"y" * 10, b""])
    with trio.fail_after(5):
        await FinishesRequests(refuse)(SCOPE, server.receive, server.send)
    start = server.log.index("http.response.start")
    assert server.log.count("read 10") == 2 and server.log.index("read 0") < start
    assert (b"connection", b"close") not in server.headers


async def test_a_body_past_the_limit_is_not_read_and_the_connection_closes(autojump_clock):
    server = FakeServer([b"x" * 10] * 10 + [b""])

    async def answer_at_once(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with trio.fail_after(5):
        await FinishesRequests(answer_at_once, drain_limit_bytes=25)(
            SCOPE, server.receive, server.send
        )
    assert server.log[:4] == ["read 10"] * 3 + ["http.response.start"]
    assert (b"connection", b"close") in server.headers


async def test_the_last_message_is_sent_even_if_the_app_is_cancelled_meanwhile():
    server = FakeServer([b""])

    async def cancelled_while_answering(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with trio.CancelScope() as scope_:
            scope_.cancel()  # as quart-trio does when hypercorn reports the end
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    await FinishesRequests(cancelled_while_answering)(SCOPE, server.receive, server.send)
    assert server.log[-1] == "http.response.body"


async def test_other_scopes_pass_through():
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await FinishesRequests(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
