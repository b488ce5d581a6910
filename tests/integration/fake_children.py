"""Stand-ins for ``stockade engine`` and ``stockade serve --engine``, for the supervisor's tests.

``python -m tests.integration.fake_children supervise WORKERS PORT`` runs the real supervisor
(:func:`stockade.fronts.supervisor.supervise`) over the two stand-ins below; ``engine`` and
``front`` are what it starts. They take the real commands' flags and honour the supervisor's
contract (:mod:`stockade.fronts.supervised`), so what is tested is the supervisor: restarts,
the order of the stop, the shared port, no orphans.

- ``engine``: listens on its ``--listen unix:PATH`` and answers each connection with its pid.
  ``FAKE_ENGINE_FAIL=1``: exits 1 before listening (a store another process owns).
- ``front``: real hypercorn on the inherited socket, with a bare ASGI app: ``/healthz`` 200,
  ``/pid`` its pid, ``/engine`` the engine's pid (503 when it cannot reach it).
  ``FAKE_FRONT_CRASH=1``: exits 3 at once, every time. ``FAKE_SLOW_STOP=1``: takes 30 s to
  stop after SIGTERM.

Each appends ``ROLE EVENT PID MONOTONIC_NS`` lines to ``FAKE_RECORD`` (started, stopped).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import trio

from stockade.fronts.supervised import listen_binds, watch_supervisor


def _record(role: str, event: str) -> None:
    path = os.environ.get("FAKE_RECORD")
    if path:
        with open(path, "a") as file:
            file.write(f"{role} {event} {os.getpid()} {time.monotonic_ns()}\n")


async def _engine(path: str) -> None:
    if os.environ.get("FAKE_ENGINE_FAIL") == "1":
        print('{"event": "failed", "role": "engine", "error": "StoreInUse"}', file=sys.stderr)
        sys.exit(1)
    listener = trio.socket.socket(trio.socket.AF_UNIX)
    await listener.bind(path)
    listener.listen()
    _record("engine", "started")

    async def answer() -> None:
        while True:
            conn, _ = await listener.accept()
            with conn:
                await conn.send(f"{os.getpid()}\n".encode())

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    await trio.sleep(0.2)  # "commits the journal"
    _record("engine", "stopped")


async def _front(engine_url: str, host: str, port: int) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    if os.environ.get("FAKE_FRONT_CRASH") == "1":
        sys.exit(3)
    socket_path = engine_url.removeprefix("unix:")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        status, body = 200, b"ok"
        if scope["path"] == "/pid":
            body = str(os.getpid()).encode()
        elif scope["path"] == "/engine":
            try:
                stream = await trio.open_unix_socket(socket_path)
                async with stream:
                    body = (await stream.receive_some(64)).strip()
            except OSError:
                status, body = 503, b"engine-unavailable"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    config = Config()
    config.bind = listen_binds(host, port)
    config.accesslog = None
    config.graceful_timeout = 5
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        _record("front", "started")  # from here on, SIGTERM means drain

        async def until_signalled() -> None:
            async for _ in signals:
                return

        await serve(app, config, shutdown_trigger=until_signalled)  # type: ignore[arg-type]
    if os.environ.get("FAKE_SLOW_STOP") == "1":  # a drain that takes its time
        await trio.sleep(30)
    _record("front", "stopped")


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def main(argv: list[str]) -> int:
    watch_supervisor()
    if argv[0] == "engine":
        trio.run(_engine, _flag(argv, "--listen").removeprefix("unix:"))
        return 0
    if argv[0] == "front":
        trio.run(_front, _flag(argv, "--engine"), _flag(argv, "--host"), int(_flag(argv, "--port")))
        return 0
    from stockade.fronts.supervisor import Commands, SupervisorSettings, supervise

    me = (sys.executable, "-m", "tests.integration.fake_children")
    settings = SupervisorSettings(
        workers=int(argv[1]), port=int(argv[2]), admin_token="t", engine_secret="s", grace_s=5,
        engine_stop_s=10, fronts_start_s=float(os.environ.get("FAKE_FRONTS_START_S", "30")),
    )  # fmt: skip
    return trio.run(supervise, settings, Commands(engine=(*me, "engine"), front=(*me, "front")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
