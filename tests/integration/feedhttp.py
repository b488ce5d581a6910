"""Helpers for the change-feed tests over real HTTP: an app served by hypercorn in this process
on a loopback port, and a client that reads Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from stockade.api.feed import FeedService
from stockade.outbound.service import Outbound


@asynccontextmanager
async def serving(app: QuartTrio) -> AsyncIterator[str]:
    """Serve ``app`` (and run its FeedService and Outbound) on a free loopback port; yield its
    URL. On exit the streams are ended and the server stops."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 5
    stopped = trio.Event()
    service: FeedService = app.config["STOCKADE_FEED"]
    outbound: Outbound = app.config["STOCKADE_OUTBOUND"]

    async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(app, config, shutdown_trigger=stopped.wait, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run_server)
        await nursery.start(service.run)
        await nursery.start(outbound.run)
        try:
            yield binds[0]
        finally:
            service.stop_streams()
            stopped.set()
            nursery.cancel_scope.cancel()


class Message:
    """One SSE message: its fields (``id``, ``event``, ``data``)."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    @property
    def id(self) -> int:
        return int(self.fields["id"])

    @property
    def data(self) -> Any:
        return json.loads(self.fields["data"])


class Stream:
    """An HTTP/1.1 response read with h11 over a socket of its own: ``status``, ``headers``
    (lower-case names), then :meth:`message` after message. (httpx leaves its body generators
    unclosed when a reader stops mid-stream, which trio reports.)"""

    def __init__(self, stream: trio.SocketStream, connection: h11.Connection) -> None:
        self._stream = stream
        self._connection = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = False  # the body's end arrived (a clean end, not a cut connection)
        self._buffer = b""

    async def _next_event(self) -> Any:
        while True:
            event = self._connection.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._connection.receive_data(await self._stream.receive_some(65536))

    async def chunk(self) -> bytes | None:
        """The next piece of the body as it arrives, None at its end; raises
        h11.RemoteProtocolError if the connection is cut before the body's end."""
        event = await self._next_event()
        if isinstance(event, h11.EndOfMessage):
            self.ended = True
            return None
        assert isinstance(event, h11.Data), event
        return bytes(event.data)

    async def body(self) -> bytes:
        pieces = []
        while (piece := await self.chunk()) is not None:
            pieces.append(piece)
        return b"".join(pieces)

    async def message(self) -> Message | None:
        """The next SSE message (comments skipped, as the HTML standard parses them), None
        at the body's end."""
        while True:
            while b"\n\n" in self._buffer:
                block, self._buffer = self._buffer.split(b"\n\n", 1)
                fields = {}
                for line in block.decode().split("\n"):
                    if line and not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                if fields and set(fields) != {"retry"}:
                    return Message(fields)
            piece = await self.chunk()
            if piece is None:
                return None
            self._buffer += piece


@asynccontextmanager
async def get(url: str, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[Stream]:
    """GET ``path`` from ``url`` (``http://host:port``) on a connection of its own, closed on
    exit (the client going away)."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        connection = h11.Connection(h11.CLIENT)
        request = h11.Request(method="GET", target=path,
                              headers=[("host", host), *(headers or {}).items()])  # fmt: skip
        await stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
        response = Stream(stream, connection)
        head = await response._next_event()
        assert isinstance(head, h11.Response), head
        response.status = head.status_code
        response.headers = {k.decode().lower(): v.decode() for k, v in head.headers}
        yield response
