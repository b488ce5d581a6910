"""The Dockerfile's health check, run as the image would run it, against the real server.

No Docker engine runs on these machines, so the image is not built here; ``./dev lint`` runs
hadolint over the Dockerfile, and this test runs its HEALTHCHECK command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.server import Server, free_port

DOCKERFILE = Path(__file__).parents[2] / "Dockerfile"


def instruction(name: str) -> str:
    """The text of the first ``name`` instruction, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip().startswith(name + " "):
            return line.strip()[len(name) :].strip()
    raise AssertionError(f"no {name} in the Dockerfile")


def health_command() -> list[str]:
    check = instruction("HEALTHCHECK")
    argv = json.loads(check[check.index("CMD") + len("CMD") :].strip())
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def run_check(port: int) -> int:
    env = {**os.environ, "STOCKADE_PORT": str(port)}
    return subprocess.run(health_command(), env=env, capture_output=True, timeout=30).returncode


def test_the_health_check_passes_against_the_server_on_its_port(tmp_path):
    server = Server(tmp_path, "token")
    server.start()
    try:
        assert run_check(server.port) == 0
    finally:
        server.kill()


def test_the_health_check_fails_where_no_server_answers():
    assert run_check(free_port()) != 0


def test_the_image_runs_serve_as_a_numeric_non_root_user():
    user = instruction("USER").split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user)
    assert json.loads(instruction("CMD"))[:2] == ["stockade", "serve"]
