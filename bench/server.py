"""The real ``stockade serve``, started as a subprocess on a free loopback port.

Shared by the HTTP benches, the comparison bench's HTTP contender and the server integration
tests. The server logs to a file in its working directory, never to a pipe, so a burst of
per-request log lines can never block it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from stockade.fronts.supervisor import resolve_workers

__all__ = ["Server", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``python -m stockade serve`` in ``workdir`` (its SQLite file lands there), with admin
    token ``token``. ``start()`` blocks until the server logs that it listens (at most
    ``start_timeout_s``); ``stop()`` signals it and waits for its exit code. ``module`` is
    what runs as ``python -m MODULE serve``: another entry point over stockade's (tests)."""

    def __init__(
        self,
        workdir: Path,
        token: str,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        start_timeout_s: float = 30.0,
        module: str = "stockade",
    ) -> None:
        self.workdir = workdir
        self.token = token
        self.args = args
        self.extra_env = env or {}
        self.start_timeout_s = start_timeout_s
        self.module = module
        self.port = free_port()
        self.host = "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        self.log = workdir / "server.log"
        self.database = workdir / "stockade.db"
        self.process: subprocess.Popen[bytes] | None = None
        supervised = "--workers" in args and resolve_workers(args[args.index("--workers") + 1]) > 1
        # under `--workers N` the engine and each front log "listening" too: wait for the
        # supervisor's, which comes once a front answers through the port
        self.ready = '"event":"listening","role":"supervisor"' if supervised else '"listening"'

    def start(self) -> None:
        env = {
            **os.environ,
            "STOCKADE_ADMIN_TOKEN": self.token,
            "STOCKADE_PORT": str(self.port),
            **self.extra_env,
        }
        seen = self.log.stat().st_size if self.log.exists() else 0  # an earlier run's lines
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "serve", *self.args],
                cwd=self.workdir,
                env=env,
                stderr=log,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.ready in self.log.read_text()[seen:]:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"the server did not start:\n{self.log.read_text()[seen:]}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.process is not None, "the server was never started"
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL the server if it still runs (cleanup after a failure)."""
        if self.running():
            self.stop(signal.SIGKILL)
