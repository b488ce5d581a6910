"""``stockade engine``: one engine serving the engine protocol on Unix sockets or TCP.

The store is opened FIRST (a PostgreSQL standby blocks there until the owner goes, exactly as
``stockade serve`` does), and only then are the addresses bound: so a front given the owner's
and the standby's addresses reaches whichever owns the store. Every connection must pass the
handshake (:mod:`stockade.protocol.auth`): with ``STOCKADE_ENGINE_SECRET`` set, it must prove
the secret; listening on TCP without one is refused at start. Unix sockets are created 0600.

SIGTERM or SIGINT: stop accepting, stop reading requests, answer the calls in flight (streams
end with EngineClosed), close the connections, then close the engine (its journal committed).
Logs are JSON lines on stderr with ``"role": "engine"``.

Beside the engine the process may run more (webhook deliveries, key refreshes, metrics):
:func:`run_engine` takes ``handlers`` for calls that are not Engine methods and ``beside``,
tasks started with the engine and its store once it is open, cancelled when it stops.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import msgspec
import trio

from stockade._open import EngineOptions, open_engine_and_store
from stockade.api.logs import install_json_logging, log_event, set_process_role
from stockade.engine.engine import Engine
from stockade.engine_process.admin import FrontServices
from stockade.engine_process.listen import open_listener
from stockade.engine_process.serving import serve_listener
from stockade.errors import InvalidRequest, StockadeError
from stockade.persistence.journal import Durability, Store
from stockade.protocol.addresses import Address, parse_addresses
from stockade.protocol.calls import CallBase
from stockade.protocol.server import CallTracer, Handler

__all__ = ["SECRET_VARIABLE", "Beside", "EngineSettings", "check_settings", "main", "run_engine"]

#: The environment variable holding the secret fronts must prove.
SECRET_VARIABLE = "STOCKADE_ENGINE_SECRET"

#: A task run beside the engine: ``(engine, store, task_status)``.
Beside = Callable[..., Awaitable[None]]


class EngineSettings(msgspec.Struct, frozen=True):
    """What ``stockade engine`` runs: the store (``database``, ``durability``), the addresses
    to ``listen`` on (``unix:PATH`` or ``tcp://HOST:PORT``, comma-separated) and the
    ``secret`` clients must prove (None: none asked; refused with a TCP address); the
    engine's ``options`` (see :mod:`stockade.options` for their flags)."""

    database: str = "sqlite:///stockade.db"
    durability: Durability = "durable"
    listen: str = "unix:stockade-engine.sock"
    secret: bytes | None = None
    options: EngineOptions = msgspec.field(default_factory=EngineOptions)


def check_settings(settings: EngineSettings) -> list[Address]:
    """The addresses to bind. Raises InvalidRequest for a bad address, or a TCP address
    without a secret (any machine could then sell stock)."""
    addresses = parse_addresses(settings.listen)
    if settings.secret is None and any(a.kind == "tcp" for a in addresses):
        raise InvalidRequest(
            f"listening on TCP needs {SECRET_VARIABLE}: without it anyone who reaches the port "
            "could place orders. Set it (the same value on every front), or listen on a Unix "
            "socket (unix:PATH)"
        )
    return addresses


async def run_engine(
    settings: EngineSettings,
    *,
    handlers: Mapping[type[CallBase[Any]], Handler] | None = None,
    beside: Sequence[Beside] = (),
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the engine process until SIGTERM/SIGINT (see the module docstring);
    ``task_status`` receives the bound addresses (a TCP port 0 replaced by the real one).
    Raises InvalidRequest for bad settings (before opening anything), what opening the store
    raises (StoreInUse, StoreUnavailable...), OSError when an address cannot be bound."""
    addresses = check_settings(settings)
    tracing = _open_tracing()
    install_json_logging(None if tracing is None else tracing.current_ids)
    log_event("starting", database=settings.database, durability=settings.durability,
              listen=settings.listen, secret=settings.secret is not None,
              tracing=tracing is not None)  # fmt: skip
    tracer: CallTracer | None = None
    if tracing is not None:
        from stockade.protocol.tracing import CallSpans

        tracer = CallSpans(tracing.tracer)
    try:
        opened = open_engine_and_store(
            settings.database, durability=settings.durability, options=settings.options,
            record_commits=tracing is not None,
        )  # fmt: skip
        async with opened as (engine, store):
            await _serve(engine, store, addresses, settings, handlers, beside, tracer, task_status)
    finally:
        if tracing is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(tracing.shutdown)
    log_event("stopped")


async def _serve(
    engine: Engine,
    store: Store,
    addresses: list[Address],
    settings: EngineSettings,
    handlers: Mapping[type[CallBase[Any]], Handler] | None,
    beside: Sequence[Beside],
    tracer: CallTracer | None,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    listeners: list[trio.SocketListener] = []
    try:
        for address in addresses:
            listeners.append(await open_listener(address))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    bound = [
        _bound(address, listener) for address, listener in zip(addresses, listeners, strict=True)
    ]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for task in beside:
            await nursery.start(task, engine, store)
        async with trio.open_nursery() as connections:
            for listener in listeners:
                await connections.start(
                    lambda task_status, listener=listener: serve_listener(
                        listener, engine, secret=settings.secret, handlers=handlers, stop=stop,
                        tracer=tracer, task_status=task_status,
                    )
                )  # fmt: skip
            connections.start_soon(_until_signalled, stop)
            log_event("listening", addresses=bound, products=engine.statistics().products)
            task_status.started(bound)
        nursery.cancel_scope.cancel()  # the tasks beside the engine stop with it


def _bound(address: Address, listener: trio.SocketListener) -> str:
    if address.kind == "tcp":
        host, port = listener.socket.getsockname()[:2]
        return f"tcp://{host}:{port}"
    return str(address)


async def _until_signalled(stop: trio.Event) -> None:
    import signal

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log_event("stopping", signal=signal.Signals(signum).name)
            stop.set()
            return


def _open_tracing() -> Any:
    from stockade.api.server import tracing_requested

    if not tracing_requested(os.environ):
        return None
    from stockade.api.tracing import open_tracing

    return open_tracing()


def main(
    database: str, durability: Durability, listen: str,
    options: EngineOptions = EngineOptions(),  # noqa: B008 (frozen: safe to share)
) -> int:  # fmt: skip
    """The ``stockade engine`` command (its arguments parsed by :mod:`stockade.cli`): the
    exit status. A refused start is one JSON line saying why."""
    set_process_role("engine")
    secret = os.environ.get(SECRET_VARIABLE, "")
    settings = EngineSettings(database, durability, listen, secret.encode() or None, options)
    fronts = FrontServices()  # keys, the books check, metrics: what fronts ask beside the engine
    try:
        trio.run(partial(run_engine, settings, handlers=fronts.handlers(), beside=[fronts.run]))
    except Exception as raised:
        exc = _unwrap(raised)
        if isinstance(exc, StockadeError | OSError):
            log_event("failed", error=type(exc).__name__, detail=str(exc))
        else:  # a bug: one JSON line with its traceback
            log_event("failed", error=type(exc).__name__, detail=str(exc),
                      exception="".join(traceback.format_exception(raised)))  # fmt: skip
        return 1
    return 0


def _unwrap(error: BaseException) -> BaseException:
    """The one error inside nested one-error groups (what a nursery wraps), else ``error``."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
