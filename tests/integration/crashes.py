"""What the crash tests share: the model of what an acknowledged order may have become by the
time of a crash, the databases they crash, and a worker run that ends with SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from stockade import Order
from stockade.persistence.memory import StoreState
from tests.integration.stores import read_postgres, read_sqlite

ROOT = Path(__file__).resolve().parents[2]
#: design.md §1: the moves an order's status can make (confirmed -> cancelled is a return).
TRANSITIONS: dict[str, set[str]] = {
    "reserved": {"confirmed", "cancelled", "expired"},
    "confirmed": {"cancelled"},
    "cancelled": set(),
    "expired": set(),
}


def _reachable(status: str) -> set[str]:
    seen = {status}
    todo = [status]
    while todo:
        for later in TRANSITIONS[todo.pop()] - seen:
            seen.add(later)
            todo.append(later)
    return seen


#: What an acknowledged status may have become by the time of the crash: itself or any status
#: reachable from it through TRANSITIONS.
LATER = {status: _reachable(status) for status in TRANSITIONS}


def may_have_become(acked: str, stored: Order, now: datetime) -> bool:
    """Whether ``stored`` (the store's record after a crash at or before ``now``) is a state an
    order acknowledged as ``acked`` may be in.

    One answer is not a change that waits for durability: ``cancel`` (or ``get_order``) on a
    lapsed hold answers ``expired`` at once, while the expiry it decided is still in the journal.
    So an acknowledged ``expired`` may still be a ``reserved`` record, provided its hold has
    lapsed (start-up expires it). Every other answer is durable before it is given.
    """
    if stored.status in LATER[acked]:
        return True
    return (
        acked == "expired"
        and stored.status == "reserved"
        and stored.expires_at is not None
        and stored.expires_at <= now
    )


def spawn_worker(
    *args: str, module: str = "tests.integration.crash_worker"
) -> subprocess.Popen[str]:
    """Start ``python -m module args...`` in the project's root, its stdout piped (by default
    crash_worker.py, whose one argument is the database URL)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


def run_and_kill(module: str, args: list[str], seconds: float) -> list[str]:
    """Run the worker until it prints "ready", let it work ``seconds`` more, kill it with
    SIGKILL and return the lines it printed after "ready" (each an acknowledged answer,
    flushed at once); a last line cut short by the kill is left out. Blocks for the run.

    A thread reads the worker's output as it comes: were the pipe left to fill, the worker
    would block writing an answer, and the kill would find it idle."""
    worker = spawn_worker(*args, module=module)
    assert worker.stdout is not None
    stdout = worker.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(stdout))
    try:
        assert stdout.readline() == "ready\n"
        reader.start()
        time.sleep(seconds)
    finally:
        worker.send_signal(signal.SIGKILL)  # also when it never got ready
        worker.wait(timeout=30)
        if reader.is_alive():
            reader.join(timeout=30)
        stdout.close()
    assert worker.returncode == -signal.SIGKILL
    assert not reader.is_alive()
    return [line[:-1] for line in lines if line.endswith("\n")]


def crash_database(
    request: Any, tmp_path: Path, store: str
) -> tuple[str, Callable[[], StoreState]]:
    """A database URL for the workers (``store`` "sqlite" or "postgresql", a fresh schema from
    the ``postgres_dsn`` fixture) and a reader of what it holds."""
    if store == "sqlite":
        path = tmp_path / "crash.db"
        return f"sqlite:///{path}", lambda: read_sqlite(str(path))
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn, lambda: read_postgres(dsn)
