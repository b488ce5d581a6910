"""Request bodies of every size and framing against the real server, over raw sockets.

Whatever the body (too large, chunked, a Content-Length that lies either way, a client that
stops mid-body), the answer is a 4xx or, for a client that never finishes its request, the
connection closes; afterwards the connection is usable or closed by the server, never hung. A
socket timeout (``HUNG_S``) is what a hung connection looks like here, and fails the test.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from bench.server import Server
from stockade.api.app import ApiSettings
from stockade.api.server import ServerSettings

TOKEN = "bodies-token"
#: any read or write that waits this long means a hung connection
HUNG_S = 5.0
#: the test servers' read timeout: a client that stops sending is dropped after this
READ_TIMEOUT_S = 1.0
MAX_BODY = ApiSettings(admin_token="").max_body_bytes
MAX_DRAIN = ApiSettings(admin_token="").max_drain_bytes
GRACE_S = ServerSettings().grace_s


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    """One HTTP/1.1 connection over a blocking socket; every wait is bounded by ``HUNG_S``."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=HUNG_S)
        self.buffer = b""
        self.send_error: OSError | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_in_background(self, data: bytes) -> threading.Thread:
        """Send ``data`` from a thread while this one reads (the server may close first)."""

        def send() -> None:
            try:
                self.sock.sendall(data)
            except OSError as error:  # EPIPE/ECONNRESET once the server closed; or a timeout
                self.send_error = error

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)  # raises TimeoutError if the connection hangs
        except ConnectionResetError:
            return b""

    def answer(self) -> Answer | None:
        """The next response, or None if the server closed the connection before one came."""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self._recv()
            if not chunk:
                assert not self.buffer, f"connection closed mid-answer: {self.buffer!r}"
                return None
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            chunk = self._recv()
            assert chunk, "connection closed mid-answer"
            self.buffer += chunk
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(int(status_line.split()[1]), headers, body)

    def closed_by_server(self) -> bool:
        """Whether the server closes the connection (EOF or reset) with nothing more sent."""
        chunk = self._recv()
        return not chunk and not self.buffer

    def settle(self, answer: Answer) -> str:
        """After ``answer``: "usable" if a GET /healthz on the connection gets 200, "closed" if
        the server closes it (right away when the answer said Connection: close)."""
        if answer.headers.get("connection") == "close":
            assert self.closed_by_server()
            return "closed"
        try:
            self.send(request("GET", "/healthz"))
        except (BrokenPipeError, ConnectionResetError):
            return "closed"
        health = self.answer()
        if health is None:
            return "closed"
        if health.status == 200:
            return "usable"
        assert 400 <= health.status < 500 and health.headers.get("connection") == "close"
        assert self.closed_by_server()
        return "closed"

    def close(self) -> None:
        self.sock.close()


def request(method: str, path: str, body: bytes | None = None, **headers: str) -> bytes:
    """A request with ``Content-Length`` (unless a header says otherwise) and ``body``."""
    fields = {"host": "test", **{k.replace("_", "-"): v for k, v in headers.items()}}
    if body is not None:
        fields.setdefault("content-type", "application/json")
        if "transfer-encoding" not in fields:
            fields.setdefault("content-length", str(len(body)))
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + (body or b"")


def chunked(body: bytes, size: int = 8192, *, last: bool = True) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
             for i in range(0, len(body), size)]  # fmt: skip
    return b"".join(parts) + (b"0\r\n\r\n" if last else b"")


def json_string(size: int) -> bytes:
    """A valid JSON document of exactly ``size`` bytes (a string)."""
    return b'"' + b"x" * (size - 2) + b'"'


ADMIN = {"authorization": f"Bearer {TOKEN}"}
ORDER = b'{"lines": [{"sku": "tee", "qty": 1}]}'

#: id -> (method, path, headers) of every route with a body; orders go through the fast path
ROUTE_CALLS: dict[str, tuple[str, str, dict[str, str]]] = {
    "orders": ("POST", "/v1/orders", ADMIN),
    "put-product": ("PUT", "/v1/products/tee", ADMIN),
    "adjustments": ("POST", "/v1/products/tee/adjustments", ADMIN),
    "put-product-unauthorized": ("PUT", "/v1/products/tee", {}),
}
ROUTES = [pytest.param(*call, id=name) for name, call in ROUTE_CALLS.items()]


def _start(tmp_path: Path, read_timeout_s: float) -> Server:
    server = Server(tmp_path, TOKEN, args=("--read-timeout", str(read_timeout_s)))
    server.start()
    client = Client(server)
    client.send(request("PUT", "/v1/products/tee", b'{"on_hand": 1000}', **ADMIN))
    assert (answer := client.answer()) is not None and answer.status == 201
    client.close()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _start(tmp_path_factory.mktemp("bodies"), READ_TIMEOUT_S)
    yield server
    server.kill()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    client = Client(server)
    yield client
    client.close()


@pytest.mark.parametrize(("method", "path", "headers"), ROUTES)
def test_a_huge_body_gets_its_4xx_then_the_connection_closes(client, method, path, headers):
    body = json_string(5_000_000)
    sender = client.send_in_background(request(method, path, body, **headers))
    answer = client.answer()
    assert answer is not None and answer.status in (401, 413), answer
    assert answer.headers["connection"] == "close"  # past max_drain_bytes
    assert client.closed_by_server()
    sender.join(HUNG_S)
    assert not sender.is_alive()


@pytest.mark.parametrize(("method", "path", "headers"), ROUTES)
def test_a_body_over_the_limit_is_read_and_the_connection_kept(client, method, path, headers):
    """The whole request is sent before the answer is read, as most clients do, the second half
    of it late: the answer (413 from Content-Length, or 401) is due before the body is in."""
    data = request(method, path, json_string(MAX_BODY + 40_000), **headers)
    client.send(data[: len(data) // 2])
    time.sleep(0.2)  # not a timing assertion: the answer must not depend on this pause
    client.send(data[len(data) // 2 :])
    answer = client.answer()
    assert answer is not None and answer.status in (401, 413), answer
    assert client.settle(answer) == "usable"


def test_chunked_bodies_are_answered_and_the_connection_kept(client):
    client.send(
        request("POST", "/v1/orders", chunked(ORDER, 5), transfer_encoding="chunked", **ADMIN)
    )
    answer = client.answer()
    assert answer is not None and answer.status == 201, answer
    body = chunked(json_string(MAX_BODY * 2), 4096)
    client.send(request("POST", "/v1/orders", body, transfer_encoding="chunked", **ADMIN))
    answer = client.answer()
    assert answer is not None and answer.status == 413
    assert client.settle(answer) == "usable"


def test_a_huge_chunked_body_gets_413_then_the_connection_closes(client):
    body = chunked(json_string(MAX_DRAIN * 3), 65536)
    sender = client.send_in_background(
        request("PUT", "/v1/products/tee", body, transfer_encoding="chunked", **ADMIN)
    )
    answer = client.answer()
    assert answer is not None and answer.status == 413
    assert answer.headers["connection"] == "close"
    assert client.closed_by_server()
    sender.join(HUNG_S)


@pytest.mark.parametrize(("method", "path", "headers"), ROUTES)
def test_a_content_length_shorter_than_the_body(client, method, path, headers):
    body = b'{"on_hand": 5, "delta": 1, "lines": []}'
    client.send(request(method, path, body, content_length="5", **headers))
    answer = client.answer()  # the first 5 bytes are the body: malformed JSON
    assert answer is not None and answer.status in (400, 401), answer
    # the rest is taken for the next request, which is garbage: 400 and close (or just close)
    assert client.settle(answer) == "closed"


def stalled_requests() -> list[bytes]:
    """For every route: a Content-Length that promises more than is sent, and a chunked body
    whose last chunk never comes; and an order whose head came without one byte of its body.
    (A head that never ends is closed after the keep-alive timeout, 5 s: see the SIGTERM
    test.)"""
    stalled = []
    for method, path, headers in ROUTE_CALLS.values():
        stalled.append(request(method, path, ORDER, content_length="100", **headers))
        stalled.append(request(method, path, chunked(ORDER, 7, last=False),
                               transfer_encoding="chunked", **headers))  # fmt: skip
    return [*stalled, request("POST", "/v1/orders", b"", content_length="100", **ADMIN)]


def test_clients_that_stop_sending_are_closed(server):
    """Each is closed after the read timeout, or answered first if the answer needs no body
    (401), then closed."""
    clients = [Client(server) for _ in stalled_requests()]
    try:
        for client, data in zip(clients, stalled_requests(), strict=True):
            client.send(data)
        for client in clients:
            answer = client.answer()
            assert answer is None or answer.status == 401, answer
            assert answer is None or client.closed_by_server()
    finally:
        for client in clients:
            client.close()


def test_bad_bodies_one_after_another_on_one_connection(client):
    """The bodies of test_server.py::test_auth_and_bad_input_change_nothing, whose 100 KB one
    used to wedge or drop the connection, each sent whole: all answered on one connection."""
    for body in (b"[]", b'{"lines": []}', b'{"lines": [{"sku": "tee", "qty": 0}]}',
                 json_string(99_999 + 2), b"{"):  # fmt: skip
        client.send(request("POST", "/v1/orders", body, **ADMIN))
        answer = client.answer()
        assert answer is not None and 400 <= answer.status < 500, (body[:20], answer)
        assert "connection" not in answer.headers
    client.send(request("GET", "/v1/products/tee"))
    assert (stock := client.answer()) is not None and b'"reserved":0' in stock.body


@pytest.fixture
def patient_server(tmp_path: Path) -> Iterator[Server]:
    """A server that would wait a minute for a silent client: only SIGTERM can end that."""
    server = _start(tmp_path, 60.0)
    yield server
    server.kill()


def test_stuck_clients_neither_delay_others_nor_hold_sigterm(patient_server):
    server = patient_server
    stuck = [Client(server) for _ in range(5)]
    try:
        # an idle keep-alive connection after a Quart request and after a drained 413
        stuck[0].send(request("GET", "/healthz"))
        assert (answer := stuck[0].answer()) is not None and answer.status == 200
        stuck[1].send(request("POST", "/v1/orders", json_string(MAX_BODY + 1), **ADMIN))
        assert (answer := stuck[1].answer()) is not None and answer.status == 413
        # clients that stopped mid-body (both framings, fast path and Quart) and mid-head
        stuck[2].send(request("POST", "/v1/orders", ORDER, content_length="100", **ADMIN))
        stuck[3].send(request("PUT", "/v1/products/tee", chunked(ORDER, 7, last=False),
                              transfer_encoding="chunked", **ADMIN))  # fmt: skip
        stuck[4].send(request("POST", "/v1/orders", ORDER, **ADMIN)[:40])

        other = Client(server)
        for _ in range(3):
            other.send(request("GET", "/healthz"))
            assert (answer := other.answer()) is not None and answer.status == 200
            other.send(request("POST", "/v1/orders", ORDER, **ADMIN))
            assert (answer := other.answer()) is not None and answer.status == 201
        other.close()

        started = time.monotonic()
        exit_code = server.stop(signal.SIGTERM, timeout_s=GRACE_S + 10)
        elapsed = time.monotonic() - started
        # the requests still waiting for their body were refused, the others closed
        for client in stuck[2:4]:
            answer = client.answer()
            assert answer is not None and answer.status == 503, answer
            assert answer.headers["connection"] == "close"
            assert answer.headers["retry-after"] == "1"
        for client in stuck:
            assert client.closed_by_server()
    finally:
        for client in stuck:
            client.close()
    assert exit_code == 0
    assert elapsed < GRACE_S, f"SIGTERM took {elapsed:.1f} s with stuck clients connected"
