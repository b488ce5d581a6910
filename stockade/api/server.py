"""``stockade serve``: the engine and the HTTP API in one trio process, on hypercorn.

SIGTERM or SIGINT stops accepting connections, lets requests in flight finish (up to
``grace_s``), then leaves the engine, which answers its calls and commits the journal.
Lifecycle events are written to stderr as one JSON object per line.

The server owns its process, so it tunes the garbage collector for serving (see
:func:`tune_gc`); the embeddable engine never touches its host's settings.
"""

from __future__ import annotations

import gc
import signal
from typing import cast

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from stockade._open import open_engine
from stockade.api.app import ApiSettings, create_app
from stockade.api.fastpath import ASGIApp, Message, Receive, Scope, Send
from stockade.api.logs import log_event
from stockade.persistence.journal import Durability

__all__ = [
    "BODY_WAIT_S",
    "GC_YOUNG_THRESHOLD",
    "ServerSettings",
    "end_responses_cleanly",
    "serve",
    "tune_gc",
]

#: Allocations between young collections while serving (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000
#: How long an answer sent before its request's body arrived waits for that body before its
#: connection is closed instead of reused (see end_responses_cleanly).
BODY_WAIT_S = 1.0


class ServerSettings(msgspec.Struct, frozen=True):
    database: str = "sqlite:///stockade.db"
    host: str = "127.0.0.1"
    port: int = 8000
    durability: Durability = "durable"
    admin_token: str = ""
    grace_s: float = 10.0


def tune_gc() -> dict[str, object]:
    """Set the collector up for a long-running server once start-up is done; return what was
    set, for the lifecycle log.

    Every request allocates a few hundred short-lived objects (ASGI messages, h11 events,
    coroutines); with CPython's default the young generation is collected every ~700
    allocations, and the older generations, which hold everything imported and loaded at
    start-up, are walked every few hundred requests, each walk a pause that every request in
    flight waits out. Freezing what start-up made takes it out of every later walk, and a
    larger young threshold makes collections rarer. Measured with ``bench/http.py`` (64
    connections): orders p99 55-78 ms against 79-101 ms with the defaults. Reference counting
    still frees everything at once; only cyclic garbage waits longer. The collection before
    the freeze runs once and takes ~0.3 s with 1M products loaded, whose ledgers the older
    generations then never walk again.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    return {"gc_frozen": gc.get_freeze_count(), "gc_threshold": list(gc.get_threshold())}


def end_responses_cleanly(app: ASGIApp, body_wait_s: float = BODY_WAIT_S) -> ASGIApp:
    """``app``, with the last message of each HTTP response held until the request's body has
    arrived (for at most ``body_wait_s``) and then sent in a shielded cancel scope.

    An answer may go out before the body it answers has arrived: a 401, 404, 405 or 413
    never reads it. hypercorn then cannot reuse the connection and closes it, from inside the
    send of that last message, while quart-trio cancels the request's tasks as soon as the
    response is out; unshielded, the cancel cut the close short and the connection hung, its
    next request never answered. Waiting for the body first keeps the connection usable (the
    client, still sending it, sees no reset); after ``body_wait_s`` the close goes ahead, and
    the shield lets it finish. The response's data is sent at once; only its end waits. Both
    waits are bounded: hypercorn shields its socket writes itself.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        body_read = trio.Event()

        async def receive_noting_the_end() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                body_read.set()  # the whole body, or a disconnect
            return message

        async def send_the_end_cleanly(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(body_wait_s):
                        await body_read.wait()
                    await send(message)
            else:
                await send(message)

        return await app(scope, receive_noting_the_end, send_the_end_cleanly)

    return wrapped


async def _until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log_event("stopping", signal=signal.Signals(signum).name)
            return


async def serve(
    settings: ServerSettings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGTERM/SIGINT. ``task_status`` receives the bound addresses."""
    log_event("starting", database=settings.database, durability=settings.durability)
    async with open_engine(settings.database, durability=settings.durability) as engine:
        app = create_app(engine, ApiSettings(admin_token=settings.admin_token))
        config = Config()
        config.bind = [f"{settings.host}:{settings.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = settings.grace_s

        async def started(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                end_responses_cleanly(cast(ASGIApp, app)),  # type: ignore[arg-type]
                config,
                shutdown_trigger=_until_signalled,
                task_status=task_status,
            )

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(started)
            tuned = tune_gc()
            log_event("listening", binds=binds, products=engine.statistics()["products"], **tuned)
            task_status.started(binds)
    log_event("stopped")
