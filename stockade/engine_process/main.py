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

import contextlib
import os
import signal
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import msgspec
import trio

from stockade._open import EngineOptions, open_engine_and_store
from stockade.api.logs import install_json_logging, log_event, set_process_role
from stockade.api.server import tracing_requested, tune_gc
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
    stop: trio.Event | None = None,
    own_process: bool = True,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the engine process until SIGTERM/SIGINT or ``stop`` is set (see the module
    docstring). ``task_status`` receives the bound addresses (a TCP port 0 replaced by the
    real one). ``own_process``: the process is the engine's own: install the JSON log
    handler and tune the garbage collector (off for a test or a host embedding it).
    Raises InvalidRequest for bad settings (before opening anything), what opening the store
    raises (StoreInUse, StoreUnavailable...), OSError when an address cannot be bound."""
    addresses = check_settings(settings)
    tracing = _open_tracing()
    if own_process:
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
            stop = trio.Event() if stop is None else stop
            serving = _Serving(settings, handlers, beside, tracer, stop, own_process)
            await serving.serve(engine, store, addresses, task_status)
    finally:
        if tracing is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(tracing.shutdown)
    log_event("stopped")


class _Serving(NamedTuple):
    """What the engine process serves its engine with, once the store is open."""

    settings: EngineSettings
    handlers: Mapping[type[CallBase[Any]], Handler] | None
    beside: Sequence[Beside]
    tracer: CallTracer | None
    stop: trio.Event
    own_process: bool

    async def serve(
        self,
        engine: Engine,
        store: Store,
        addresses: list[Address],
        task_status: trio.TaskStatus[list[str]],
    ) -> None:
        """Bind every address (now that the store is ours), serve until stopped, and remove
        the Unix socket files on the way out."""
        listeners: list[trio.SocketListener] = []
        try:
            for address in addresses:
                listeners.append(await open_listener(address))
        except BaseException:
            for listener in listeners:
                await listener.aclose()
            raise
        try:
            await self._listen(engine, store, addresses, listeners, task_status)
        finally:
            for address in addresses:
                if address.kind == "unix":
                    with contextlib.suppress(OSError):
                        os.unlink(address.path)

    async def _listen(
        self,
        engine: Engine,
        store: Store,
        addresses: list[Address],
        listeners: list[trio.SocketListener],
        task_status: trio.TaskStatus[list[str]],
    ) -> None:
        bound = [_bound(a, listener) for a, listener in zip(addresses, listeners, strict=True)]
        async with trio.open_nursery() as nursery:
            for task in self.beside:
                await nursery.start(task, engine, store)
            async with trio.open_nursery() as connections:
                for listener in listeners:
                    await connections.start(
                        lambda task_status, listener=listener: serve_listener(
                            listener, engine, secret=self.settings.secret,
                            handlers=self.handlers, stop=self.stop, tracer=self.tracer,
                            task_status=task_status,
                        )
                    )  # fmt: skip
                signals = trio.CancelScope()
                connections.start_soon(_until_signalled, self.stop, signals)
                # as a server does: what start-up made is taken out of every GC walk
                tuned = tune_gc() if self.own_process else {}
                log_event("listening", addresses=bound, products=engine.statistics().products,
                          **tuned)  # fmt: skip
                task_status.started(bound)
                await self.stop.wait()
                signals.cancel()
            nursery.cancel_scope.cancel()  # the tasks beside the engine stop with it


def _bound(address: Address, listener: trio.SocketListener) -> str:
    if address.kind == "tcp":
        host, port = listener.socket.getsockname()[:2]
        return f"tcp://{host}:{port}"
    return str(address)


async def _until_signalled(stop: trio.Event, scope: trio.CancelScope) -> None:
    with scope, trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log_event("stopping", signal=signal.Signals(signum).name)
            stop.set()
            return


def _open_tracing() -> Any:
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
