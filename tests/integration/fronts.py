"""Real ``stockade serve --engine`` fronts for tests, each a subprocess logging to a file of its
own, stopped by pid (the engine: :mod:`tests.integration.engine_process`), and a cluster of one
engine and two fronts (the ``cluster`` fixture: import it into a test module)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.server import Server, free_port
from tests.integration.engine_process import EngineProcess

__all__ = [
    "ADMIN",
    "BUY",
    "FRESH",
    "TOKEN",
    "Cluster",
    "Front",
    "buy",
    "cluster",
    "lines",
]


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


TOKEN = "fronts-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
BUY = {"lines": [{"sku": "hot", "qty": 1}]}
#: For the fault tests, which leave connections idle while the engine is away: no keep-alive,
#: so a request never races a front closing an idle connection (a client-side reset).
FRESH = httpx.Limits(max_keepalive_connections=0)


class Cluster:
    def __init__(self, workdir: Path, socket_dir: Path, *front_args: str) -> None:
        self.workdir = workdir
        self.address = f"unix:{socket_dir / 'engine.sock'}"
        self.database = f"sqlite:///{workdir / 'stockade.db'}"
        self.engine = EngineProcess(workdir, self.database, self.address)
        self.fronts = [
            Front(workdir, TOKEN, self.address, host=host, name=f"front{i}", args=front_args)
            for i, host in enumerate(("127.0.0.1", "127.0.0.2"))
        ]

    def start(self) -> None:
        self.engine.start()
        for front in self.fronts:
            front.start()

    def restart_engine(self) -> None:
        self.engine = EngineProcess(self.workdir, self.database, self.address)
        self.engine.start()

    def stop(self) -> None:
        for front in self.fronts:
            front.kill()
        self.engine.kill()


@pytest.fixture
def cluster(tmp_path, request) -> Iterator[Cluster]:
    """An engine and two fronts; ``@pytest.mark.parametrize("cluster", [args], indirect=True)``
    gives the fronts command-line arguments."""
    socket_dir = Path(tempfile.mkdtemp(prefix="stk", dir="/tmp"))  # short: AF_UNIX paths
    cluster = Cluster(tmp_path, socket_dir, *getattr(request, "param", ()))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)


async def buy(client: httpx.AsyncClient, front: Front, headers: dict[str, str]) -> int:
    """POST one unit of ``hot`` through ``front``: the status."""
    return (await client.post(f"{front.url}/v1/orders", json=BUY, headers=headers)).status_code


def lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
