"""A real ``stockade engine`` subprocess for tests: started, waited for, stopped by its pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class EngineProcess:
    """``python -m stockade engine`` on ``database``, listening on ``listen``; its JSON log
    lines go to a file (``lines()``)."""

    def __init__(
        self, tmp_path: Path, database: str, listen: str, secret: str | None = None
    ) -> None:
        self.database = database
        self.listen = listen
        self.secret = secret
        self.log = tmp_path / f"engine-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.addresses: list[str] = []

    def start(self, timeout_s: float = 20.0) -> EngineProcess:
        """Start it and wait until it listens."""
        return self.launch().wait_listening(timeout_s)

    def launch(self) -> EngineProcess:
        """Start it without waiting (a PostgreSQL standby only listens once it owns)."""
        env = {k: v for k, v in os.environ.items() if k != "STOCKADE_ENGINE_SECRET"}
        if self.secret is not None:
            env["STOCKADE_ENGINE_SECRET"] = self.secret
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stockade", "engine", "--database", self.database,
                 "--listen", self.listen],
                stdout=log, stderr=log, env=env,
            )  # fmt: skip
        return self

    def wait_listening(self, timeout_s: float = 20.0) -> EngineProcess:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.get("event") == "listening":
                    self.addresses = line["addresses"]
                    return self
            if self.process.poll() is not None:
                raise AssertionError(f"the engine exited: {self.log.read_text()}")
            time.sleep(0.05)
        raise AssertionError(f"the engine did not listen in time: {self.log.read_text()}")

    @property
    def url(self) -> str:
        return ",".join(self.addresses)

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for text in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(text))
        return found

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then wait for the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        return self.process.wait(timeout_s)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
