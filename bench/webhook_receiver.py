"""A webhook receiver on loopback, for the webhook tests and ``./dev bench durable --webhook``.

It records every request it is sent (headers, body, arrival time) and answers as its ``mode``
says: ``"ok"`` (204), an HTTP status (e.g. 500), ``"hang"`` (never answers), ``"close"``
(closes the connection without an answer). :meth:`Receiver.down` stops listening (connections
are refused) until :meth:`Receiver.up`, on the same port.

    python -m bench.webhook_receiver PORT_FILE OUT_FILE

runs one in its own process (the bench's: it must not take the server's CPU): it writes its
port to PORT_FILE once it listens, answers 204 to everything, and at SIGTERM writes one line
per request to OUT_FILE, ``<webhook-id> <arrival UNIX time>``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import h11
import trio

__all__ = ["Receiver", "Request"]

Mode = str | int


class Request:
    """One request the receiver read: lower-case header names."""

    def __init__(self, headers: dict[str, str], body: bytes, at: float) -> None:
        self.headers = headers
        self.body = body
        self.at = at

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


class Receiver:
    """Listens on ``127.0.0.1:port`` (0: a free port, kept across :meth:`down` / :meth:`up`)
    from :meth:`run`, until cancelled."""

    def __init__(self, port: int = 0, mode: Mode = "ok") -> None:
        self.port = port
        self.mode: Mode = mode
        self.requests: list[Request] = []
        self.arrived = trio.Event()  # set at each request, then replaced
        self._listening = trio.Event()
        self._serving: trio.CancelScope | None = None
        self._want_up = True

    def down(self) -> None:
        """Stop listening and drop every open connection."""
        self._want_up = False
        if self._serving is not None:
            self._serving.cancel()

    def up(self) -> None:
        self._want_up = True
        self._listening.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            if not self._want_up:
                self._listening = trio.Event()
                await self._listening.wait()
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            with trio.CancelScope() as self._serving:
                async with trio.open_nursery() as nursery:
                    if not started:
                        started = True
                        task_status.started(self.port)
                    nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            for listener in listeners:
                await listener.aclose()

    async def wait_for(self, count: int) -> None:
        """Return once ``count`` requests have arrived."""
        while len(self.requests) < count:
            await self.arrived.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                request = await _read_request(connection, stream)
                if request is None:
                    return
                self.requests.append(request)
                arrived, self.arrived = self.arrived, trio.Event()
                arrived.set()
                mode = self.mode
                if mode == "hang":
                    await trio.sleep_forever()
                if mode == "close":
                    return
                status = 204 if mode == "ok" else int(mode)
                headers = [("content-length", "0")]
                data = connection.send(h11.Response(status_code=status, headers=headers)) or b""
                data += connection.send(h11.EndOfMessage()) or b""
                try:
                    await stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()


async def _read_request(connection: h11.Connection, stream: trio.SocketStream) -> Request | None:
    """The next whole request on ``stream``, or None when the client is gone."""
    headers: dict[str, str] = {}
    body = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            connection.receive_data(data)
            if not data:
                return None
        elif isinstance(event, h11.Request):
            headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return Request(headers, body, time.time())
        else:  # ConnectionClosed, or the client broke the protocol
            return None


async def _main(port_file: Path, out_file: Path) -> None:
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.run)
        await trio.Path(port_file).write_text(str(port))
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()
    lines = [f"{seq} {r.at:.6f}\n" for r in receiver.requests for seq in _seqs(r)]
    await trio.Path(out_file).write_text("".join(lines))


def _seqs(request: Request) -> list[str]:
    """The seqs a delivery carried: its ``webhook-id``, or each event's of a batch."""
    if not request.body.startswith(b'{"events"'):
        return [request.webhook_id]
    return [str(event["seq"]) for event in json.loads(request.body)["events"]]


if __name__ == "__main__":
    trio.run(_main, Path(sys.argv[1]), Path(sys.argv[2]))
