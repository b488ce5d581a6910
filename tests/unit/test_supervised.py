"""The supervisor's small rules: how many workers, the binds a front serves, the backoff, and
what a child does when its supervisor is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from stockade.cli import main
from stockade.fronts.supervised import listen_binds
from stockade.fronts.supervisor import (
    RESTART_MAX_S,
    RESTART_MIN_S,
    STABLE_S,
    _next_backoff,
    resolve_workers,
)


def test_workers_is_a_count_or_auto():
    assert resolve_workers("3") == 3
    assert resolve_workers("auto") == len(os.sched_getaffinity(0))
    assert resolve_workers(" AUTO ") >= 1
    for bad in ("0", "-2", "two", ""):
        with pytest.raises(ValueError):
            resolve_workers(bad)


def test_serve_refuses_a_bad_worker_count(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["serve", "--workers", "none"])
    assert exit.value.code == 2
    assert "must be a positive integer or auto, not 'none'" in capsys.readouterr().err


def test_a_front_serves_the_inherited_socket_when_there_is_one():
    assert listen_binds("127.0.0.1", 8000, {}) == ["127.0.0.1:8000"]
    assert listen_binds("::1", 8000, {}) == ["[::1]:8000"]
    assert listen_binds("127.0.0.1", 8000, {"STOCKADE_LISTEN_FD": "7"}) == ["fd://7"]
    assert listen_binds("127.0.0.1", 8000, {"STOCKADE_LISTEN_FD": "x"}) == ["127.0.0.1:8000"]


def test_backoff_doubles_while_a_child_keeps_dying_and_resets_once_it_lived():
    delays = [RESTART_MIN_S]
    for _ in range(10):
        delays.append(_next_backoff(delays[-1], lived_s=0.5))
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert max(delays) == RESTART_MAX_S == delays[-1]
    assert _next_backoff(RESTART_MAX_S, lived_s=STABLE_S) == RESTART_MIN_S
    assert _next_backoff(0.0, lived_s=0.0) == RESTART_MIN_S


def test_a_child_stops_itself_when_the_supervisor_pipe_closes():
    """What ``watch_supervisor`` does in a child: the read end's end of file is a SIGTERM."""
    read, write = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, sys, time\n"
         "from stockade.fronts.supervised import watch_supervisor\n"
         "signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))\n"
         "watch_supervisor()\n"
         "print('watching', flush=True)\n"
         "time.sleep(60)\n"],
        env={**os.environ, "STOCKADE_SUPERVISOR_FD": str(read)},
        pass_fds=(read,), stdout=subprocess.PIPE,
    )  # fmt: skip
    os.close(read)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"watching\n"
        assert child.poll() is None  # still running while the pipe is open
        os.close(write)  # the supervisor is gone
        assert child.wait(timeout=10) == 42
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_workers_and_engine_together_are_refused(capsys):
    pytest.importorskip("stockade.fronts.front", reason="serve --engine is not in this tree yet")
    assert main(["serve", "--workers", "2", "--engine", "unix:/nowhere.sock"]) == 2
    assert "--workers starts its own engine" in capsys.readouterr().err
