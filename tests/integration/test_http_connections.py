"""The real server's HTTP/1.1 connections, byte by byte: what a keep-alive client may see."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from bench.server import Server
from tests.integration.test_server import TOKEN

HANG_S = 10.0  # far longer than an answer takes: only a connection left hanging gets near it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("connections"), TOKEN)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def read_response(conn: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


def send_head(conn: socket.socket, request_line: bytes, length: int) -> None:
    conn.sendall(
        request_line + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


EARLY_ANSWERS = [
    (b"PUT /v1/products/a", b"401"),  # merchant route, no token: refused before the body
    (b"DELETE /v1/products/a/adjustments", b"405"),
    (b"POST /v1/nothing-here", b"404"),
]


@pytest.mark.parametrize(("request_line", "status"), EARLY_ANSWERS)
def test_a_body_sent_after_its_answer_never_hangs_the_connection(
    server: Server, request_line: bytes, status: bytes
) -> None:
    """The server may answer before a request's body has arrived. The client, still sending
    it, then sends its next request on the same connection: it is answered (the server waits
    BODY_WAIT_S for the body, which tests/unit/test_server_connections.py pins on a mock
    clock) or, had the body come later than that, the connection is closed. It used to hang:
    the next request was never answered and the socket never closed."""
    body = b'{"on_hand": 1}'
    with socket.create_connection((server.host, server.port), timeout=HANG_S) as conn:
        send_head(conn, request_line, len(body))
        head = read_response(conn)  # answered with the body still unsent
        assert head.split(b" ")[1] == status, head
        try:
            conn.sendall(body + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            after = conn.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            after = b""  # closed
        except TimeoutError:
            pytest.fail("the connection hung: the next request was never answered")
        assert after == b"" or after.startswith(b"HTTP/1.1 200 "), after


@pytest.mark.parametrize(("request_line", "status"), EARLY_ANSWERS)
def test_a_body_that_never_comes_ends_the_connection(
    server: Server, request_line: bytes, status: bytes
) -> None:
    """After its answer, a request whose body does not arrive within BODY_WAIT_S has its
    connection closed (it cannot be reused), not left open for ever."""
    with socket.create_connection((server.host, server.port), timeout=HANG_S) as conn:
        send_head(conn, request_line, 100)
        head = read_response(conn)
        assert head.split(b" ")[1] == status, head
        try:
            assert conn.recv(65536) == b""  # closed
        except TimeoutError:
            pytest.fail("the connection was left open after its answer")
