"""Real ``stockade serve --engine`` fronts for tests, each a subprocess logging to a file of its
own, stopped by pid (the engine: :mod:`tests.integration.engine_process`)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.server import Server, free_port

__all__ = ["Front", "wait_until"]


def wait_until(check: object, timeout_s: float = 10.0, what: str = "a condition") -> None:
    """Poll ``check()`` (a callable) until it is true, failing after ``timeout_s``."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Front(Server):
    """``python -m stockade serve --engine ENGINE`` on ``host`` (a loopback address)."""

    def __init__(
        self, workdir: Path, token: str, engine: str, *, host: str = "127.0.0.1",
        name: str = "front", env: dict[str, str] | None = None, args: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        super().__init__(workdir, token, args=("--engine", engine, *args), env=env)
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.log = workdir / f"{name}.log"
        self.extra_env["STOCKADE_HOST"] = host
