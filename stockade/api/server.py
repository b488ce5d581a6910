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

from stockade._open import open_engine_and_store
from stockade.api.app import ApiSettings, create_app
from stockade.api.fastpath import ASGIApp, Message, Receive, Scope, Send
from stockade.api.keys import ApiKeys
from stockade.api.logs import log_event
from stockade.persistence.journal import Durability
from stockade.persistence.keys import KeyedStore, KeyTable, MemoryKeys

__all__ = [
    "DRAIN_LIMIT_BYTES",
    "GC_YOUNG_THRESHOLD",
    "FinishesRequests",
    "ServerSettings",
    "serve",
    "tune_gc",
]

#: Allocations between young collections while serving (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


class ServerSettings(msgspec.Struct, frozen=True):
    database: str = "sqlite:///stockade.db"
    host: str = "127.0.0.1"
    port: int = 8000
    durability: Durability = "durable"
    admin_token: str = ""
    grace_s: float = 10.0
    public_holds: bool = False
    key_refresh_s: float = 1.0


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


#: How much of an unread request body an early answer reads and drops (see FinishesRequests).
DRAIN_LIMIT_BYTES = 1024 * 1024


class FinishesRequests:
    """Ends every HTTP request cleanly under hypercorn (0.18, HTTP/1.1) and quart-trio.

    An answer that comes before the request body was read (a refusal: 401, 403, 413, 415...)
    used to leave the connection stuck: hypercorn ends a request from inside the app's last
    ``send``, closing the connection when the body is not all read, and quart-trio cancels
    its request nursery in the middle of that call, so the close was cancelled half done and
    the client's next request on the connection was never answered. So:

    * before such an answer starts, the rest of the body is read and dropped, up to
      ``DRAIN_LIMIT_BYTES`` (the connection then serves the next request, and the client is
      not reset while it still sends); past that, the answer says ``Connection: close``;
    * the last message of each answer is sent in a shielded cancel scope, so hypercorn's
      recycling or closing of the connection is never cut short (it already shields the
      socket write itself).

    Blocks an early answer for as long as the client takes to send the rest of its body, as
    reading the body would have. One lock orders this reader and the app's own.
    """

    def __init__(self, app: ASGIApp, drain_limit_bytes: int = DRAIN_LIMIT_BYTES) -> None:
        self.app = app
        self.drain_limit_bytes = drain_limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lock = trio.Lock()
        finished = False  # the body has been read to its end (or the client has gone)

        async def read() -> Message:
            nonlocal finished
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                finished = True
            return message

        async def tracked() -> Message:  # the app's reads
            async with lock:
                return await read()

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start" and not finished:
                drained = 0
                while not finished and drained <= self.drain_limit_bytes:
                    async with lock:
                        if not finished:  # (the app may have read to the end meanwhile)
                            drained += len((await read()).get("body", b""))
                if not finished:
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"connection", b"close")]}  # fmt: skip
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self.app(scope, tracked, answer)


async def _until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log_event("stopping", signal=signal.Signals(signum).name)
            return


async def serve(
    settings: ServerSettings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGTERM/SIGINT. ``task_status`` receives the bound addresses.

    API keys are read from the store before listening, then re-read every ``key_refresh_s``
    beside the server (see :mod:`stockade.api.keys`)."""
    log_event("starting", database=settings.database, durability=settings.durability,
              public_holds=settings.public_holds)  # fmt: skip
    opened = open_engine_and_store(settings.database, durability=settings.durability)
    async with opened as (engine, store):
        table: KeyTable = store.key_table() if isinstance(store, KeyedStore) else MemoryKeys()
        try:
            api = ApiSettings(admin_token=settings.admin_token, public_holds=settings.public_holds,
                              key_refresh_s=settings.key_refresh_s)  # fmt: skip
            app = create_app(engine, api, table)
            keys: ApiKeys = app.config["STOCKADE_KEYS"]
            config = Config()
            config.bind = [f"{settings.host}:{settings.port}"]
            config.accesslog = None
            config.errorlog = None
            config.graceful_timeout = settings.grace_s

            served = FinishesRequests(cast(ASGIApp, app))

            async with trio.open_nursery() as nursery:
                await nursery.start(keys.run)

                async def started(*, task_status: trio.TaskStatus[list[str]]) -> None:
                    await hypercorn_serve(
                        served,  # type: ignore[arg-type]  # hypercorn's scope types are narrower
                        config,
                        shutdown_trigger=_until_signalled,
                        task_status=task_status,
                    )
                    nursery.cancel_scope.cancel()  # served: stop re-reading the keys

                binds = await nursery.start(started)
                tuned = tune_gc()
                products = engine.statistics()["products"]
                log_event("listening", binds=binds, products=products, **tuned)
                task_status.started(binds)
        finally:
            with trio.CancelScope(shield=True):
                await table.aclose()
    log_event("stopped")
