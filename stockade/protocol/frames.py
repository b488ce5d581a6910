"""Frames on a byte stream: what travels, and how it is cut and batched.

Each frame is a 4-byte big-endian length and that many bytes of msgpack: one tagged Struct
(an array whose first item is the tag). The frame kinds:

* handshake (see :mod:`stockade.protocol.auth`): ``ServerHello``, ``ClientHello``,
  ``Welcome``, ``Refused``;
* client to engine: ``Request`` (a call, its id and the W3C trace context), ``Cancel`` (stop
  a stream), ``Credit`` (the client can take ``n`` more stream items), ``Ping``;
* engine to client: ``Result`` (a call's value; a stream's end), ``Failure`` (a call's error
  as a code, see :mod:`stockade.protocol.codes`), ``Item`` (one stream item), ``Pong``.

The sender encodes values with the value's own type; the receiver decodes the value part
lazily as ``msgspec.Raw`` (``*In`` twins of the frames) and then with the type that call
expects, so ``Order``, ``list[LocationLevel]``... come back as the same Structs, and a bad
call is answered for its id rather than dropping the connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import trio

__all__ = [
    "MAX_FRAME_SIZE",
    "PROTOCOL_VERSION",
    "STREAM_WINDOW",
    "Cancel",
    "ClientHello",
    "Credit",
    "Failure",
    "FrameStream",
    "Item",
    "ItemIn",
    "Ping",
    "Pong",
    "ProtocolError",
    "Refused",
    "Request",
    "RequestIn",
    "Result",
    "ResultIn",
    "ServerHello",
    "Welcome",
    "encode",
]

#: Bumped whenever a frame or a call changes incompatibly; both sides must speak the same.
PROTOCOL_VERSION = 1
#: The largest frame either side sends or accepts (bytes, after the length prefix); a peer
#: announcing a larger one is dropped.
MAX_FRAME_SIZE = 16 * 1024 * 1024
#: Stream items the engine may send before the client grants more (the client's buffer).
STREAM_WINDOW = 256
_LENGTH = 4
#: The size of one read from the stream.
_READ_SIZE = 256 * 1024


class ProtocolError(Exception):
    """The peer broke the protocol (garbage, a truncated or oversized frame, a frame out of
    turn): the connection is dropped. Internal to the protocol package."""


class _Frame(msgspec.Struct, tag=True, array_like=True):
    pass


# -- handshake --------------------------------------------------------------------------------


class ServerHello(_Frame, tag=1):
    version: int
    nonce: bytes
    secret_required: bool


class ClientHello(_Frame, tag=2):
    version: int
    nonce: bytes
    proof: bytes


class Welcome(_Frame, tag=3):
    proof: bytes


class Refused(_Frame, tag=4):
    reason: str


# -- client to engine -------------------------------------------------------------------------


class Request(_Frame, tag=10):
    id: int
    call: Any
    traceparent: str | None = None
    tracestate: str | None = None


class RequestIn(_Frame, tag=10):
    id: int
    call: msgspec.Raw
    traceparent: str | None = None
    tracestate: str | None = None


class Cancel(_Frame, tag=11):
    id: int


class Credit(_Frame, tag=12):
    id: int
    n: int


class Ping(_Frame, tag=13):
    n: int


# -- engine to client -------------------------------------------------------------------------


class Result(_Frame, tag=20):
    id: int
    value: Any


class ResultIn(_Frame, tag=20):
    id: int
    value: msgspec.Raw


class Failure(_Frame, tag=21):
    id: int
    code: str
    message: str
    fields: dict[str, Any] = {}


class Item(_Frame, tag=22):
    id: int
    value: Any


class ItemIn(_Frame, tag=22):
    id: int
    value: msgspec.Raw


class Pong(_Frame, tag=23):
    n: int


def _enc_hook(value: Any) -> Any:
    """Arguments of types msgpack has no form for, as the engine would read them: any other
    mapping as a dict, any other iterable (a generator of lines, a tuple of locations) as a
    list. Anything else cannot travel (TypeError, turned into InvalidRequest by callers)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Iterable):
        return list(value)
    raise TypeError(f"values of type {type(value).__name__} cannot be sent to an engine")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


def encode(frame: _Frame) -> bytes:
    """One frame's bytes, length prefix included. Raises TypeError for a value that cannot be
    encoded, OverflowError for an integer beyond 64 bits, ProtocolError for a frame above
    MAX_FRAME_SIZE."""
    body = _encoder.encode(frame)
    if len(body) > MAX_FRAME_SIZE:
        raise ProtocolError(f"a frame of {len(body)} bytes is above the limit ({MAX_FRAME_SIZE})")
    return len(body).to_bytes(_LENGTH, "big") + body


class FrameStream:
    """Frames over a trio stream. Reading: :meth:`receive` returns the next frame's body.
    Writing: :meth:`send_nowait` queues a frame and never blocks; :meth:`run_writer` (a task)
    sends everything queued in one ``send_all`` each time, so a burst of replies costs one
    system call. What is queued is bounded by the caller (calls in flight, stream credits)."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int = MAX_FRAME_SIZE) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._start = 0
        self._queued: list[bytes] = []
        self._wake = trio.Event()
        self._sent = trio.Event()
        self._sending = False
        self._closed = False

    # -- reading ------------------------------------------------------------------------------

    async def receive(self) -> bytes | None:
        """The next frame's body, or None at a clean end of the stream. Raises ProtocolError
        for a frame above ``max_frame`` or a stream that ends inside a frame; the stream's
        own errors (BrokenResourceError...) pass through. Cancellable."""
        while True:
            buffer, start = self._buffer, self._start
            available = len(buffer) - start
            if available >= _LENGTH:
                size = int.from_bytes(buffer[start : start + _LENGTH], "big")
                if size > self.max_frame:
                    raise ProtocolError(f"a frame of {size} bytes is above the limit")
                end = start + _LENGTH + size
                if len(buffer) >= end:
                    body = bytes(buffer[start + _LENGTH : end])
                    if end == len(buffer):
                        buffer.clear()
                        self._start = 0
                    else:
                        self._start = end
                    return body
            if start:
                del buffer[:start]
                self._start = 0
            data = await self.stream.receive_some(_READ_SIZE)
            if not data:
                if len(buffer):
                    raise ProtocolError("the stream ended inside a frame")
                return None
            buffer += data

    # -- writing ------------------------------------------------------------------------------

    def send_nowait(self, frame: _Frame) -> None:
        """Queue ``frame`` for the writer. Never blocks; raises TypeError or ProtocolError
        (see :func:`encode`) with nothing queued."""
        self.send_bytes_nowait(encode(frame))

    def send_bytes_nowait(self, data: bytes) -> None:
        if self._closed:
            return
        self._queued.append(data)
        self._wake.set()

    async def send(self, frame: _Frame) -> None:
        """Send ``frame`` now (the handshake, before the writer runs). Blocks until the stream
        took it; cancellable."""
        await self.stream.send_all(encode(frame))

    async def run_writer(self) -> None:
        """Send queued frames until cancelled or the stream breaks (the error propagates).
        Blocks in ``send_all``: a peer that stops reading stops the writer, not the engine."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            queued, self._queued = self._queued, []
            if queued:
                self._sending = True
                await self.stream.send_all(b"".join(queued) if len(queued) > 1 else queued[0])
                self._sending = False
            if not self._queued:
                self._sent.set()

    async def wait_sent(self) -> None:
        """Wait until the writer has sent everything queued so far (it must be running).
        Cancellable."""
        while self._queued or self._sending:
            self._sent = trio.Event()
            await self._sent.wait()

    async def aclose(self) -> None:
        """Close the stream (no further frames are queued). Never raises for a broken one."""
        self._closed = True
        self._wake.set()
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.aclose()
