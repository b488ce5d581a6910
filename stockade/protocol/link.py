"""One admitted connection seen from the client: the calls in flight on it, matched to their
replies by id (:class:`Link`), and what each waits for (:class:`Pending`).

The link's reader hands each reply to its Pending; its writer sends what callers queued, one
``send_all`` per burst; its pinger notices an engine that went silent. When the link is lost,
every call still in flight on it fails with EngineUnavailable.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque

import msgspec
import trio

from stockade.errors import EngineUnavailable
from stockade.protocol.addresses import Address
from stockade.protocol.codes import error_from_wire
from stockade.protocol.frames import (
    STREAM_WINDOW,
    Failure,
    FrameStream,
    ItemIn,
    Ping,
    Pong,
    ProtocolError,
    ResultIn,
)

__all__ = ["SWEEP_S", "Link", "Pending"]

#: How often a link fails the calls past their deadline (so a call gives up within its
#: timeout plus this).
SWEEP_S = 0.05

_inbound = msgspec.msgpack.Decoder(ResultIn | Failure | ItemIn | Pong)


class Pending:
    """A call in flight on a link: its reply (raw) or error, or a stream's items."""

    __slots__ = ("done", "ended", "error", "items", "name", "value")

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.done = trio.Event()
        self.value: msgspec.Raw | None = None
        self.error: BaseException | None = None
        self.items: deque[msgspec.Raw] = deque()
        self.ended = False

    def resolve(self, value: msgspec.Raw) -> None:
        self.value = value
        self.ended = True
        self.done.set()

    def fail(self, error: BaseException) -> None:
        if not self.ended:
            self.error = error
            self.ended = True
        self.done.set()

    def item(self, value: msgspec.Raw) -> None:
        self.items.append(value)
        self.done.set()


class Link:
    """One admitted connection and the calls in flight on it."""

    def __init__(self, frames: FrameStream, address: Address) -> None:
        self.frames = frames
        self.address = address
        self.pending: dict[int, Pending] = {}
        self._deadlines: list[tuple[float, int, float]] = []  # (deadline, id, limit), a heap
        self.alive = True
        self.last_heard = trio.current_time()
        self.reason: str | None = None

    async def run(self, ping_interval_s: float, ping_timeout_s: float) -> str:
        """Serve the link until it is lost; returns why. Cancellable (closes it)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, nursery)
                nursery.start_soon(self._ping, ping_interval_s, ping_timeout_s, nursery)
                nursery.start_soon(self._expire)
                try:
                    reason = await self._read()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    reason = f"connection broken ({exc})"
                self.reason = self.reason or reason
                nursery.cancel_scope.cancel()
        finally:
            self.alive = False
            for pending in self.pending.values():
                pending.fail(
                    EngineUnavailable(
                        f"{pending.name}: the connection to the engine at {self.address} was "
                        f"lost ({self.reason}) with this call in flight: its outcome is unknown "
                        "(retry with the same idempotency key)"
                    )
                )
            self.pending.clear()
            self._deadlines.clear()
            with trio.CancelScope(shield=True):
                await self.frames.aclose()
        return self.reason or "closed"

    def add(self, id: int, pending: Pending, limit_s: float = math.inf) -> None:
        """Put a call in flight; unanswered after ``limit_s`` it fails with
        EngineUnavailable (the engine's late answer is then dropped). Never blocks."""
        self.pending[id] = pending
        if limit_s != math.inf:
            heapq.heappush(self._deadlines, (trio.current_time() + limit_s, id, limit_s))

    async def _expire(self) -> None:
        """Fail the calls past their deadline, every SWEEP_S: one timer for all of them
        rather than a cancel scope per call."""
        deadlines, pending = self._deadlines, self.pending
        while True:
            await trio.sleep(SWEEP_S)
            now = trio.current_time()
            while deadlines and deadlines[0][0] <= now:
                _, id, limit_s = heapq.heappop(deadlines)
                late = pending.pop(id, None)
                if late is not None:
                    late.fail(
                        EngineUnavailable(
                            f"{late.name}: the engine did not answer within {limit_s} s"
                        )
                    )

    async def _write(self, nursery: trio.Nursery) -> None:
        try:
            await self.frames.run_writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.reason = self.reason or f"connection broken ({exc})"
            nursery.cancel_scope.cancel()

    async def _ping(self, interval_s: float, timeout_s: float, nursery: trio.Nursery) -> None:
        for n in itertools.count():
            await trio.sleep(interval_s)
            if trio.current_time() - self.last_heard > timeout_s:
                self.reason = self.reason or f"the engine was silent for over {timeout_s} s"
                nursery.cancel_scope.cancel()
                return
            self.frames.send_nowait(Ping(n))

    async def _read(self) -> str:
        frames = self.frames
        pending = self.pending
        while True:
            try:
                body = await frames.receive()
            except ProtocolError as exc:
                return f"a bad frame from the engine: {exc}"
            if body is None:
                return "the engine closed the connection"
            self.last_heard = trio.current_time()
            try:
                frame = _inbound.decode(body)
            except msgspec.DecodeError as exc:
                return f"a bad frame from the engine: {exc}"
            kind = type(frame)
            if kind is ResultIn:
                if (waiting := pending.pop(frame.id, None)) is not None:
                    waiting.resolve(frame.value)
            elif kind is Failure:
                if (waiting := pending.pop(frame.id, None)) is not None:
                    waiting.fail(error_from_wire(frame.code, frame.message, frame.fields))
            elif kind is ItemIn and (waiting := pending.get(frame.id)) is not None:
                if len(waiting.items) > STREAM_WINDOW:
                    return "the engine sent stream items beyond the credit granted"
                waiting.item(frame.value)
            # a Pong only refreshes last_heard
