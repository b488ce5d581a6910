"""end_responses_cleanly over a fake ASGI server and app, on trio's mock clock."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from stockade.api.fastpath import Message
from stockade.api.server import BODY_WAIT_S, end_responses_cleanly

HTTP = {"type": "http"}
START = {"type": "http.response.start", "status": 401, "headers": []}
DATA = {"type": "http.response.body", "body": b"no", "more_body": True}
END = {"type": "http.response.body", "body": b""}
DISCONNECT = {"type": "http.disconnect"}


class FakeServer:
    """One request as hypercorn serves it: the body messages it delivers, what it was sent.
    Sending a response's end tells the app the client is gone and then takes ``end_s`` to
    finish (hypercorn closing a connection it cannot reuse)."""

    def __init__(self, end_s: float = 0.0) -> None:
        self.to_app, self._from_peer = trio.open_memory_channel[Message](10)
        self.end_s = end_s
        self.sent: list[tuple[float, Message]] = []

    async def receive(self) -> Message:
        message: Message = await self._from_peer.receive()
        return message

    async def send(self, message: Message) -> None:
        if message is END:
            self.to_app.send_nowait(DISCONNECT)
            await trio.sleep(self.end_s)
        self.sent.append((trio.current_time(), message))


async def answers_early(scope: Any, receive: Any, send: Any) -> None:
    """Answers without the body, which it reads in the background, and is cancelled as soon
    as it hears the client has gone: what quart-trio does."""
    async with trio.open_nursery() as nursery:

        async def read_body() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(read_body)
        for message in (START, DATA, END):
            await send(message)
        await trio.sleep_forever()  # until read_body cancels


async def test_the_end_of_an_answer_waits_for_the_body(autojump_clock):
    server = FakeServer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(end_responses_cleanly(answers_early), HTTP, server.receive, server.send)
        await trio.testing.wait_all_tasks_blocked()
        assert [m for _, m in server.sent] == [START, DATA]  # the data goes out at once
        await trio.sleep(0.25)
        await server.to_app.send({"type": "http.request", "body": b"{", "more_body": True})
        await trio.sleep(0.25)
        await server.to_app.send({"type": "http.request", "body": b"}"})
    assert server.sent[2:] == [(0.5, END)]  # when the body's last part came, not before


async def test_a_body_that_never_comes_is_waited_for_only_so_long(autojump_clock):
    server = FakeServer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(end_responses_cleanly(answers_early), HTTP, server.receive, server.send)
    assert server.sent[2:] == [(BODY_WAIT_S, END)]


async def test_the_end_is_sent_whole_though_the_app_is_cancelled_meanwhile(autojump_clock):
    server = FakeServer(end_s=0.5)  # the cancel lands while the end is being sent
    await server.to_app.send({"type": "http.request", "body": b""})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(end_responses_cleanly(answers_early), HTTP, server.receive, server.send)
    assert server.sent == [(0, START), (0, DATA), (0.5, END)]


async def test_other_scopes_pass_through(autojump_clock):
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    receive, send = object(), object()
    await end_responses_cleanly(app)({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert seen == [({"type": "lifespan"}, receive, send)]
