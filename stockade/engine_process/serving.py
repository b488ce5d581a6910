"""Accepting connections and serving each with the protocol's per-connection loop."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import trio

from stockade.engine.engine import Engine
from stockade.protocol.calls import CallBase
from stockade.protocol.server import CallTracer, Handler, serve_connection

__all__ = ["serve_listener"]

_log = logging.getLogger("stockade.protocol")


async def serve_listener(
    listener: trio.SocketListener,
    engine: Engine,
    *,
    secret: bytes | None = None,
    handlers: Mapping[type[CallBase[Any]], Handler] | None = None,
    stop: trio.Event | None = None,
    tracer: CallTracer | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on ``listener`` and serve each in a task of its own until ``stop``
    is set: then stop accepting, let every connection answer its calls in flight and close
    (see :func:`~stockade.protocol.server.serve_connection`), and return. Cancellable
    (drops every connection). A failed accept (too many open files...) is logged and retried
    after a pause; one connection's trouble never reaches another."""
    stop = stop if stop is not None else trio.Event()
    try:
        async with trio.open_nursery() as connections:
            accepting = trio.CancelScope()
            connections.start_soon(_stop_accepting, stop, accepting)
            task_status.started()
            with accepting:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        _log.warning("engine could not accept a connection: %s", exc)
                        await trio.sleep(0.1)
                        continue
                    connections.start_soon(
                        partial(
                            serve_connection, stream, engine, secret=secret, handlers=handlers,
                            stop=stop, tracer=tracer, peer=_peer(stream),
                        )
                    )  # fmt: skip
            await listener.aclose()
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()


async def _stop_accepting(stop: trio.Event, accepting: trio.CancelScope) -> None:
    await stop.wait()
    accepting.cancel()


def _peer(stream: trio.SocketStream) -> str:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "a client"
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return "a local client"
