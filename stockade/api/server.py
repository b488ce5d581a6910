"""``stockade serve``: the engine and the HTTP API in one trio process, on hypercorn.

SIGTERM or SIGINT stops accepting connections, closes idle ones, refuses requests whose body is
still on its way (503, see :mod:`stockade.api.body_guard`), ends every event stream (see
:mod:`stockade.api.sse`), lets requests in flight finish (up to ``grace_s``), stops webhook
delivery (saving each subscription's cursor), then leaves the engine, which answers its calls
and commits the journal.
Lifecycle events are written to stderr as one JSON object per line.

Connections are bounded in time (hypercorn's ``read_timeout`` and ``keep_alive_timeout``): a
client silent for ``read_timeout_s`` while the server waits for its bytes (the rest of a request
body, or its next request) has its connection closed without an answer, and an idle keep-alive
connection, or one that has not sent a whole request head, is closed after ``keep_alive_s``.
Request bodies are small JSON documents sent in one go, so 5 s of silence means a client that
stopped, not a slow network. A request being answered is not timed: the server does not read
while it answers.

The server owns its process, so it tunes the garbage collector for serving (see
:func:`tune_gc`) and sends every standard-library log record to stderr as JSON too (see
:func:`~stockade.api.logs.install_json_logging`); the embeddable engine never touches its
host's settings. Traces are off unless the ``OTEL_*`` environment asks for them (see
:func:`tracing_requested` and :mod:`stockade.api.tracing`).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from stockade._open import EngineOptions, open_engine_and_store
from stockade.api.app import ApiSettings, create_app
from stockade.api.body_guard import BodyGuard
from stockade.api.bounds import HoldBounds
from stockade.api.feed import FeedService, FeedSettings
from stockade.api.keys import ApiKeys
from stockade.api.logs import install_json_logging, log_event, set_process_role
from stockade.api.port import LocalBooks
from stockade.fronts.supervised import listen_binds
from stockade.outbound.service import Outbound
from stockade.persistence.journal import Durability
from stockade.persistence.keys import KeyedStore, KeyTable, MemoryKeys
from stockade.persistence.sinks import SinkStore
from stockade.persistence.webhooks import WebhookStore

if TYPE_CHECKING:  # only imported when tracing is on
    from stockade.api.tracing import Tracing

__all__ = [
    "GC_YOUNG_THRESHOLD",
    "ServerSettings",
    "api_settings",
    "serve",
    "serve_app",
    "tracing_requested",
    "tune_gc",
]

#: Allocations between young collections while serving (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


class ServerSettings(msgspec.Struct, frozen=True):
    """``engine``: a front's engine address(es) (``unix:PATH`` or ``tcp://HOST:PORT``,
    comma-separated; see :mod:`stockade.fronts.front`): empty for an engine in this process,
    on ``database``. A front's engine calls time out after ``engine_timeout_s`` (503
    ``engine-unavailable``; keep it below ``read_timeout_s``), and it waits up to
    ``engine_start_s`` for an engine when it starts. ``engine_options``
    are the engine's options, for an engine in this process (see :mod:`stockade.options` for
    their flags); ``bounds`` bound anonymous callers (:mod:`stockade.api.bounds`)."""

    database: str = "sqlite:///stockade.db"
    host: str = "127.0.0.1"
    port: int = 8000
    durability: Durability = "durable"
    admin_token: str = ""
    grace_s: float = 10.0
    read_timeout_s: float = 5.0
    keep_alive_s: float = 5.0
    public_holds: bool = False
    key_refresh_s: float = 1.0
    feed: FeedSettings = msgspec.field(default_factory=FeedSettings)
    engine: str = ""
    engine_timeout_s: float = 3.0
    engine_start_s: float = 30.0
    engine_options: EngineOptions = msgspec.field(default_factory=EngineOptions)
    bounds: HoldBounds = msgspec.field(default_factory=HoldBounds)


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


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the operator asked for traces: ``OTEL_TRACES_EXPORTER`` names an exporter, or
    an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and neither ``OTEL_TRACES_EXPORTER=none`` nor
    ``OTEL_SDK_DISABLED=true`` turns them off. Imports nothing of OpenTelemetry."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def _open_tracing() -> Tracing | None:
    """Tracing as the environment configures it, or None (and no OpenTelemetry import)."""
    if not tracing_requested(os.environ):
        return None
    from stockade.api.tracing import open_tracing

    return open_tracing()


async def _until_signalled(*stopping: Callable[[], None]) -> None:
    """Return at SIGTERM or SIGINT, after calling each of ``stopping``."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log_event("stopping", signal=signal.Signals(signum).name)
            for stop in stopping:
                stop()
            return


async def serve(
    settings: ServerSettings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until SIGTERM/SIGINT. ``task_status`` receives the bound addresses.

    API keys are read from the store before listening, then re-read every ``key_refresh_s``
    beside the server (see :mod:`stockade.api.keys`); so are the webhook subscriptions, which
    are delivered beside it (see :mod:`stockade.outbound`). Raises InvalidRequest, before
    anything is opened, for a tracing configuration that cannot be honoured (an exporter that
    is not installed). On the way out, the spans not yet exported are exported (blocking, in a
    thread, up to the exporters' timeouts)."""
    tracing = _open_tracing()
    install_json_logging(None if tracing is None else tracing.current_ids)
    if settings.engine:
        set_process_role("front")
        log_event("starting", engine=settings.engine, public_holds=settings.public_holds,
                  tracing=tracing is not None)  # fmt: skip
    else:
        log_event("starting", database=settings.database, durability=settings.durability,
                  public_holds=settings.public_holds, tracing=tracing is not None)  # fmt: skip
    try:
        if settings.engine:  # a front: the engine is another process's
            from stockade.fronts.front import serve_front

            await serve_front(settings, tracing, task_status)
        else:
            await _serve(settings, tracing, task_status)
    finally:
        if tracing is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(tracing.shutdown)
    log_event("stopped")


async def _serve(
    settings: ServerSettings, tracing: Tracing | None, task_status: trio.TaskStatus[list[str]]
) -> None:
    opened = open_engine_and_store(
        settings.database, durability=settings.durability, options=settings.engine_options,
        record_commits=tracing is not None,
    )  # fmt: skip
    async with opened as (engine, store):
        table: KeyTable = store.key_table() if isinstance(store, KeyedStore) else MemoryKeys()
        try:
            hooks = store.webhook_table() if isinstance(store, WebhookStore) else None
            sinks = store.sink_table() if isinstance(store, SinkStore) else None
            app = create_app(engine, api_settings(settings), table, tracing, webhook_table=hooks,
                             books=LocalBooks(store), sink_table=sinks)  # fmt: skip
            await serve_app(app, settings, task_status, products=engine.statistics().products)
        finally:
            with trio.CancelScope(shield=True):
                await table.aclose()


def api_settings(settings: ServerSettings) -> ApiSettings:
    """The app's settings for a server's."""
    return ApiSettings(admin_token=settings.admin_token, public_holds=settings.public_holds,
                       key_refresh_s=settings.key_refresh_s, feed=settings.feed,
                       bounds=settings.bounds)  # fmt: skip


async def serve_app(
    app: QuartTrio, settings: ServerSettings, task_status: trio.TaskStatus[list[str]],
    **listening: object,
) -> None:  # fmt: skip
    """Serve ``app`` (made by :func:`~stockade.api.app.create_app`) on hypercorn until
    SIGTERM/SIGINT, with its keys re-read and its feed service run beside it; then stop as the
    module docstring says. ``task_status`` receives the bound addresses; ``listening`` goes
    into the ``listening`` log line. The app's :class:`~stockade.outbound.service.Outbound`,
    when it has one in this process, delivers beside it. Raises what reading the keys, the
    subscriptions or starting the feed service raises first (a server must not start without
    its keys)."""
    feed: FeedService = app.config["STOCKADE_FEED"]
    keys: ApiKeys = app.config["STOCKADE_KEYS"]
    outbound = app.config["STOCKADE_OUTBOUND"]  # delivered here when the engine is here
    config = Config()
    config.bind = listen_binds(settings.host, settings.port)  # or the supervisor's socket
    config.accesslog = None  # Accounting logs each request
    errors = logging.getLogger("hypercorn.error")  # as JSON, through the root logger
    errors.setLevel(logging.WARNING)  # not its "Running on" line: we log "listening"
    config.errorlog = errors
    config.graceful_timeout = settings.grace_s
    # hypercorn annotates int, and hands it to trio.fail_after, which takes any float
    config.read_timeout = settings.read_timeout_s  # type: ignore[assignment]
    config.keep_alive_timeout = settings.keep_alive_s
    guard: BodyGuard = app.config["STOCKADE_GUARD"]
    until_signalled = partial(_until_signalled, guard.stop, feed.stop_streams)

    async with trio.open_nursery() as nursery:
        await nursery.start(keys.run)
        await nursery.start(feed.run)
        if isinstance(outbound, Outbound):
            await nursery.start(outbound.run)

        async def started(*, task_status: trio.TaskStatus[list[str]]) -> None:
            await hypercorn_serve(
                app, config, shutdown_trigger=until_signalled, task_status=task_status
            )
            nursery.cancel_scope.cancel()  # served: stop re-reading keys, delivering

        binds = await nursery.start(started)
        tuned = tune_gc()
        log_event("listening", binds=binds, **listening, **tuned)
        task_status.started(binds)
