"""A minimal HTTP/1.1 keep-alive client on anyio streams, for load generation.

General-purpose clients (httpx) spend more CPU per request than the server under test on this
2-core machine, so the bench would measure its own client. This one sends a request and reads
one ``Content-Length`` response on a persistent connection, and opens a new one when the
server says ``Connection: close`` (hypercorn does after 1,000 requests on a connection); it runs
on trio or asyncio alike.
It understands only what stockade's server answers (no chunked bodies, no redirects): anything
else raises :class:`HttpError`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["HttpConnection", "HttpError", "Response"]

MAX_HEAD_BYTES = 64 * 1024


class HttpError(Exception):
    """The server's answer was not one this client can read, or the connection broke."""


#: Seconds a connection may sit idle before it is opened anew: below the server's keep-alive.
IDLE_S = 4.0


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class HttpConnection:
    """One persistent connection. Not safe for concurrent use: one request at a time."""

    def __init__(self, stream: SocketStream, host: str, port: int, token: str | None) -> None:
        self._host = host
        self._port = port
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._closing = False  # the server said Connection: close
        self._used = time.monotonic()  # when the last answer was read
        self._prefix = f"Host: {host}:{port}\r\n"
        if token is not None:
            self._prefix += f"Authorization: Bearer {token}\r\n"

    @classmethod
    async def open(cls, host: str, port: int, token: str | None = None) -> HttpConnection:
        stream = await anyio.connect_tcp(host, port)
        return cls(stream, host, port, token)

    async def _reopen(self) -> None:
        await self._stream.aclose()
        self._stream = await anyio.connect_tcp(self._host, self._port)
        self._reader = BufferedByteReceiveStream(self._stream)
        self._closing = False

    async def request(self, method: str, path: str, body: object = None) -> Response:
        """Send ``body`` (JSON-encoded unless bytes) and read the answer."""
        payload = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        head = f"{method} {path} HTTP/1.1\r\n{self._prefix}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        try:
            # The server closes a keep-alive connection idle for its keep-alive timeout (5 s
            # for stockade serve): one idle nearly that long is opened anew rather than used
            # as the server closes it (a flash sale waits out its last holds idle).
            if self._closing or time.monotonic() - self._used > IDLE_S:
                await self._reopen()
            await self._stream.send((head + "\r\n").encode() + payload)
            raw = await self._reader.receive_until(b"\r\n\r\n", MAX_HEAD_BYTES)
            status, length, self._closing = self._parse_head(raw)
            data = await self._reader.receive_exactly(length) if length else b""
            self._used = time.monotonic()
        except (
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.BrokenResourceError,
            anyio.DelimiterNotFound,
            OSError,
        ) as exc:
            raise HttpError(f"{method} {path}: the connection broke ({exc!r})") from exc
        return Response(status, data)

    @staticmethod
    def _parse_head(raw: bytes) -> tuple[int, int, bool]:
        """(status, content length, whether the server closes the connection after this)."""
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {lines[0]!r}")
        length = None
        closing = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection":
                closing = "close" in value.lower()
            elif name == "transfer-encoding":
                raise HttpError(f"unsupported transfer-encoding {value.strip()!r}")
        if length is None:
            raise HttpError("the response has no Content-Length")
        return int(parts[1]), length, closing

    async def aclose(self) -> None:
        await self._stream.aclose()
