"""The ``serve --workers`` supervisor, over stand-ins for the engine and the fronts (see
:mod:`tests.integration.fake_children`): real processes, real signals, a real shared port.
What the real engine and fronts do under it is in ``test_workers.py``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import free_port

DEADLINE_S = 30.0


class Supervised:
    """The supervisor over the stand-ins, as a subprocess logging to a file."""

    def __init__(self, tmp_path: Path, workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "supervisor.log"
        self.record = tmp_path / "record"
        environ = {**os.environ, "FAKE_RECORD": str(self.record), **env}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.fake_children", "supervise",
                 str(workers), str(self.port)],
                env=environ, stderr=log,
            )  # fmt: skip

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        return [line for line in lines if line.get("role") == "supervisor"
                and (name is None or line["event"] == name)]  # fmt: skip

    def wait_for(self, name: str, count: int = 1, **fields: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            found = [e for e in self.events(name) if fields.items() <= e.items()]
            if len(found) >= count:
                return found
            assert self.process.poll() is None or name == "stopped", self.log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"no {count} {name} {fields} in:\n{self.log.read_text()}")

    def pids(self, child: str) -> list[int]:
        return [e["pid"] for e in self.events("child_started") if e["child"] == child]

    def wait(self) -> int:
        return self.process.wait(timeout=DEADLINE_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.pids("engine") + self.pids("front"):  # should be gone already
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if alive(pid)]
        time.sleep(0.05)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    running = Supervised(tmp_path)
    running.wait_for("listening")
    yield running
    running.kill()


def fresh(url: str) -> httpx.Client:
    """A client that opens a new connection for every request."""
    return httpx.Client(base_url=url, timeout=5, limits=httpx.Limits(max_keepalive_connections=0))


def test_a_killed_front_is_restarted_while_the_other_serves(supervised):
    first = supervised.pids("front")
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    wait_gone([first[0]])  # its socket closed with it (connections it had queued were reset)
    with fresh(supervised.url) as client:
        for _ in range(20):  # answered from the moment it died, by the other
            assert client.get("/pid").status_code == 200
        deadline = time.monotonic() + DEADLINE_S
        supervised.wait_for("child_started", count=4)  # the engine, two fronts, the new one
        (exited,) = supervised.events("child_exited")
        assert exited["pid"] == first[0] and exited["exit_code"] == -signal.SIGKILL
        restarted = supervised.pids("front")[2]
        assert restarted not in first and alive(restarted)
        # the new front serves the shared port too
        seen: set[int] = set()
        while restarted not in seen:
            seen.add(int(client.get("/pid").text))
            assert time.monotonic() < deadline, seen
    os.kill(supervised.process.pid, signal.SIGTERM)
    assert supervised.wait() == 0


def test_sigterm_stops_the_fronts_first_then_the_engine(supervised):
    pids = supervised.pids("front") + supervised.pids("engine")
    deadline = time.monotonic() + DEADLINE_S
    while supervised.record.read_text().count("front started") < 2:  # both ready to drain
        assert time.monotonic() < deadline
        time.sleep(0.05)
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.wait() == 0
    assert not any(alive(pid) for pid in pids)
    stopped = {}
    for line in supervised.record.read_text().splitlines():
        role, event, pid, at = line.split()
        if event == "stopped":
            stopped[int(pid)] = (role, int(at))
    assert {pid for pid in stopped} == set(pids)  # every child stopped cleanly
    last_front = max(at for role, at in stopped.values() if role == "front")
    (engine_at,) = [at for role, at in stopped.values() if role == "engine"]
    assert last_front < engine_at
    assert supervised.events("stopped")[-1]["exit_code"] == 0


def test_the_supervisor_killed_leaves_no_orphan(supervised):
    pids = supervised.pids("front") + supervised.pids("engine")
    assert all(alive(pid) for pid in pids)
    (listening,) = supervised.events("engine_listening")
    run_dir = Path(listening["url"].removeprefix("unix:")).parent
    assert run_dir.is_dir()
    supervised.process.kill()
    supervised.process.wait()
    wait_gone(pids)
    assert not run_dir.exists()  # the orphans removed the private directory on their way out
    with pytest.raises(httpx.TransportError):  # and nobody holds the port any more
        fresh(supervised.url).get("/pid")


def test_a_killed_engine_is_restarted_and_fronts_reach_the_new_one(supervised):
    (engine,) = supervised.pids("engine")
    with fresh(supervised.url) as client:
        assert client.get("/engine").text == str(engine)
        os.kill(engine, signal.SIGKILL)
        supervised.wait_for("engine_listening", count=2)
        (_, new) = supervised.pids("engine")
        assert client.get("/engine").text == str(new)
    assert len(supervised.pids("front")) == 2  # the fronts were left alone


def test_an_engine_that_cannot_start_stops_the_supervisor(tmp_path):
    supervised = Supervised(tmp_path, FAKE_ENGINE_FAIL="1")
    try:
        assert supervised.wait() == 1
        (failed,) = supervised.events("failed")
        assert failed["error"] == "engine-cannot-start"
        assert supervised.pids("front") == []  # no front was started for nothing
        assert "StoreInUse" in supervised.log.read_text()  # the engine said why
    finally:
        supervised.kill()


def test_a_front_that_keeps_dying_is_restarted_with_backoff(tmp_path):
    supervised = Supervised(tmp_path, workers=1, FAKE_FRONT_CRASH="1", FAKE_FRONTS_START_S="8")
    try:
        assert supervised.wait() == 1
        (failed,) = supervised.events("failed")
        assert failed["error"] == "fronts-never-answered"
        delays = [e["delay_s"] for e in supervised.events("child_restarting")]
        # a handful of restarts in 8 s (0.1 + 0.2 + ... + 3.2 = 6.3 s of waits), not hundreds,
        # each wait twice the one before
        assert 2 <= len(delays) <= 8, delays
        assert delays == [0.1 * 2**i for i in range(len(delays))], delays
        assert len(supervised.pids("front")) in (len(delays), len(delays) + 1)
        assert not any(alive(pid) for pid in supervised.pids("engine"))
    finally:
        supervised.kill()


def test_connections_opened_at_once_are_spread_over_the_fronts(supervised):
    """64 connections opened together (as a load generator does): the kernel hashes them
    over the fronts' sockets, so neither front gets them all (binomial: fewer than 8 of 64
    on one side happens about once in 10^10 runs)."""

    def whose(_: int) -> tuple[int, socket.socket]:
        sock = socket.create_connection(("127.0.0.1", supervised.port), timeout=10)
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n0\r\n\r\n"):  # chunked: read to the last chunk
            answer += sock.recv(4096)
        return int(answer.split(b"\r\n\r\n", 1)[1].split(b"\r\n")[1]), sock

    fronts = set(supervised.pids("front"))
    seen: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S
    with fresh(supervised.url) as client:
        while seen != fronts:  # both listen (a front's socket listens once it is ready)
            assert time.monotonic() < deadline, (seen, fronts)
            seen.add(int(client.get("/pid").text))
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(whose, range(64)))
    for _, sock in answers:
        sock.close()
    counts = Counter(pid for pid, _ in answers)
    assert set(counts) == fronts
    assert min(counts.values()) >= 8, counts


def test_a_second_signal_kills_every_child_at_once(tmp_path):
    supervised = Supervised(tmp_path, FAKE_SLOW_STOP="1")
    try:
        supervised.wait_for("listening")
        pids = supervised.pids("front") + supervised.pids("engine")
        supervised.process.send_signal(signal.SIGINT)
        supervised.wait_for("stopping")
        started = time.monotonic()
        supervised.process.send_signal(signal.SIGINT)  # impatient
        assert supervised.wait() == 1  # the engine was killed, not stopped
        assert time.monotonic() - started < 10  # not the fronts' 30 s drain
        assert supervised.events("stopping_now")
        wait_gone(pids)
    finally:
        supervised.kill()
