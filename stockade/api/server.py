"""``stockade serve``: the engine and the HTTP API in one trio process, on hypercorn.

SIGTERM or SIGINT stops accepting connections, lets requests in flight finish (up to
``grace_s``), then leaves the engine, which answers its calls and commits the journal.
Lifecycle events are written to stderr as one JSON object per line.
"""

from __future__ import annotations

import signal

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from stockade._open import open_engine
from stockade.api.app import ApiSettings, create_app
from stockade.api.logs import log_event
from stockade.persistence.journal import Durability

__all__ = ["ServerSettings", "serve"]


class ServerSettings(msgspec.Struct, frozen=True):
    database: str = "sqlite:///stockade.db"
    host: str = "127.0.0.1"
    port: int = 8000
    durability: Durability = "durable"
    admin_token: str = ""
    grace_s: float = 10.0


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
                app, config, shutdown_trigger=_until_signalled, task_status=task_status
            )

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(started)
            log_event("listening", binds=binds, products=engine.statistics()["products"])
            task_status.started(binds)
    log_event("stopped")
