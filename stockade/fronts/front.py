"""``stockade serve --engine URL[,URL]``: one front, the HTTP API over an engine in another
process (design.md §12), with no store of its own.

The front links to the engine at ``URL`` (``unix:PATH`` or ``tcp://HOST:PORT``; several,
comma-separated: it follows whichever answers, e.g. a PostgreSQL owner and its standby), proving
``STOCKADE_ENGINE_SECRET`` when the engine asks for it, waits for the link (up to
``ServerSettings.engine_start_s``: a front without an engine serves nothing), then serves the
app of :mod:`stockade.api` over the ports of :mod:`stockade.fronts.remote` exactly as a single
process does (:func:`~stockade.api.server.serve_app`): same routes, auth, answers, shutdown.
What needs the store goes to the engine process: keys (re-read every ``key_refresh_s`` when
they changed), the books check, webhooks (delivered by the engine process), its metrics.

When the engine cannot be reached, a call times out (``engine_timeout_s``) or the link drops
with a call in flight, the request is answered 503 ``engine-unavailable`` with ``Retry-After``
(its outcome is unknown: a client retries with its ``Idempotency-Key``), ``/readyz`` is 503,
event streams end (clients resume from their ``Last-Event-ID``), and the link is made again
in the background; ``/healthz`` answers while the front runs.

Environment, beside the server's: ``STOCKADE_ENGINE_SECRET`` (the engine's secret);
``PROMETHEUS_MULTIPROC_DIR`` (set by the ``--workers`` supervisor, see
:mod:`stockade.fronts.supervisor`): the fronts' HTTP series are written there and every
front's ``/metrics`` sums them (see :mod:`stockade.api.metrics`). Log lines carry
``"role": "front"``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import trio

from stockade.api.app import create_app
from stockade.api.logs import log_event
from stockade.api.server import ServerSettings, api_settings, serve_app
from stockade.errors import EngineRefused, EngineUnavailable, StockadeError
from stockade.fronts.remote import (
    RemoteBooks,
    RemoteKeys,
    RemoteOutbound,
    RemotePort,
    engine_series,
)
from stockade.protocol.client import RemoteEngine, open_remote_engine

if TYPE_CHECKING:  # only imported when tracing is on
    from stockade.api.tracing import Tracing

__all__ = ["SECRET_ENV", "serve_front"]

#: The engine's secret, from the environment (never from the command line: ps shows it).
SECRET_ENV = "STOCKADE_ENGINE_SECRET"


async def serve_front(
    settings: ServerSettings, tracing: Tracing | None, task_status: trio.TaskStatus[list[str]]
) -> None:
    """Serve the API over the engine at ``settings.engine`` until SIGTERM/SIGINT.
    ``task_status`` receives the bound addresses. Raises EngineUnavailable when no engine
    answers within ``engine_start_s``, EngineRefused when one refuses this front (wrong
    secret or protocol version), InvalidRequest for a bad address."""
    secret = os.environ.get(SECRET_ENV) or None
    opened = open_remote_engine(
        settings.engine, secret=secret, timeout_s=settings.engine_timeout_s, wait=False,
        tracing=tracing is not None,
    )  # fmt: skip
    async with opened as remote:
        failure = await _linked(remote, settings)
        if failure is None:
            log_event("engine_linked", engine=str(remote.address))
            app = create_app(
                RemotePort(remote), api_settings(settings), RemoteKeys(remote), tracing,
                outbound=RemoteOutbound(remote), books=RemoteBooks(remote),
                engine_series=lambda: engine_series(remote),
            )  # fmt: skip
            app.config["STOCKADE_REMOTE"] = remote  # /readyz asks it whether the link is up
            await serve_app(app, settings, task_status, engine=settings.engine)
    if failure is not None:  # raised here, not in the link's nursery: one error, not a group
        raise failure


async def _linked(remote: RemoteEngine, settings: ServerSettings) -> StockadeError | None:
    """Wait for the link (up to ``engine_start_s``): None once it is up, else why not."""
    with trio.move_on_after(settings.engine_start_s):
        try:
            await remote.wait_connected()
        except EngineRefused as refused:
            return refused
    if remote.connected:
        return None
    last = f" (last: {remote.last_error})" if remote.last_error else ""
    return EngineUnavailable(
        f"no engine at {settings.engine} answered in {settings.engine_start_s} s{last}"
    )
