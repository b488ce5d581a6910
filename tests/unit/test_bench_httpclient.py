"""The bench's HTTP client against a scripted server on loopback."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import SocketStream

from bench.httpclient import HttpConnection, HttpError


async def serve(
    answers: list[bytes], connections: list[int], task_status=anyio.TASK_STATUS_IGNORED
):
    """A server that answers each request with the next of ``answers`` and closes the
    connection after an answer that says so."""

    async def handle(stream: SocketStream) -> None:
        connections.append(1)
        async with stream:
            buffer = b""
            while answers:
                while b"\r\n\r\n" not in buffer:
                    try:
                        buffer += await stream.receive()
                    except anyio.EndOfStream:
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)  # fmt: skip
                while len(buffer) < length:
                    buffer += await stream.receive()
                buffer = buffer[length:]
                answer = answers.pop(0)
                await stream.send(answer)
                if b"Connection: close" in answer:
                    return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener:
        await listener.serve(handle)


def answer(status: int, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_reconnects_after_connection_close():
    answers = [answer(200, b'{"n": 1}'), answer(201, b"{}", "Connection: close"),
               answer(409, b'{"n": 3}')]  # fmt: skip
    connections: list[int] = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, answers, connections)
        conn = await HttpConnection.open("127.0.0.1", port, token="t")
        assert (await conn.request("GET", "/a")).json() == {"n": 1}
        assert (await conn.request("POST", "/b", {"x": 1})).status == 201
        third = await conn.request("POST", "/c", b"{}")
        assert (third.status, third.json()) == (409, {"n": 3})
        assert len(connections) == 2
        await conn.aclose()
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "unsupported transfer"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "no Content-Length"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort", "broke"),
    ],
)
async def test_unreadable_answers_raise_http_error(raw, error):
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, [raw, b""], [])
        conn = await HttpConnection.open("127.0.0.1", port)
        with pytest.raises(HttpError, match=error):
            await conn.request("GET", "/")
        await conn.aclose()
        tg.cancel_scope.cancel()
