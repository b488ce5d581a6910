"""What a process started by the ``serve --workers`` supervisor does on its side.

The supervisor (:mod:`stockade.fronts.supervisor`) hands each child two things through its
environment:

- ``STOCKADE_SUPERVISOR_FD``: the read end of a pipe whose write end only the supervisor holds.
  :func:`watch_supervisor` (called by ``stockade``'s command line before any command runs)
  reads it in a daemon thread; end of file means the supervisor is gone, however it died
  (kill -9 included), and the child then stops itself as if told to by SIGTERM: a front
  drains, the engine commits. If it has not exited after ``ORPHAN_GRACE_S`` it exits at once.
  An orphan also removes the supervisor's private directory (``STOCKADE_RUN_DIR``) as it
  exits, which the supervisor, killed, could not.
  A pipe, not ``PR_SET_PDEATHSIG``: that signal follows the *thread* that forked the child,
  and trio starts processes from worker threads that it retires when idle.
- ``STOCKADE_LISTEN_FD``: a front's listening socket, bound once by the supervisor and shared
  by every front (the kernel queues connections on it, so a front that dies loses none of the
  connections not yet accepted). :func:`listen_binds` turns it into hypercorn's ``fd://N``
  bind; without it, the usual ``host:port``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import threading
import time
from collections.abc import Mapping

__all__ = [
    "LISTEN_FD",
    "ORPHAN_GRACE_S",
    "RUN_DIR",
    "SUPERVISOR_FD",
    "listen_binds",
    "watch_supervisor",
]

#: Environment variable naming the inherited read end of the supervisor's pipe.
SUPERVISOR_FD = "STOCKADE_SUPERVISOR_FD"
#: Environment variable naming the supervisor's private directory (the engine's socket...).
RUN_DIR = "STOCKADE_RUN_DIR"
#: Environment variable naming a front's inherited listening socket.
LISTEN_FD = "STOCKADE_LISTEN_FD"
#: Seconds an orphaned child has to stop cleanly before it exits at once.
ORPHAN_GRACE_S = 30.0


def listen_binds(host: str, port: int, environ: Mapping[str, str] = os.environ) -> list[str]:
    """hypercorn binds for a server: the inherited socket when the supervisor passed one,
    else ``host:port`` (an IPv6 host in brackets)."""
    fd = environ.get(LISTEN_FD, "")
    if fd.isdigit():
        return [f"fd://{int(fd)}"]
    return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]


def watch_supervisor(environ: Mapping[str, str] = os.environ) -> threading.Thread | None:
    """Stop this process when the supervisor that started it is gone; return the watching
    thread, or None when no supervisor started this process. Never blocks the caller: the
    thread blocks in ``read`` on the pipe."""
    fd = environ.get(SUPERVISOR_FD, "")
    if not fd.isdigit():
        return None
    watcher = threading.Thread(
        target=_watch, args=(int(fd), environ.get(RUN_DIR, "")), daemon=True,
        name="stockade-supervisor-watch",
    )  # fmt: skip
    watcher.start()
    return watcher


def _watch(fd: int, run_dir: str) -> None:
    try:
        while os.read(fd, 1):  # the supervisor never writes: only end of file comes
            pass
    except OSError:  # the fd was closed under us: treat as the supervisor gone
        pass
    if run_dir:  # whoever of the orphans exits first removes it; the others find it gone
        atexit.register(shutil.rmtree, run_dir, ignore_errors=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_S)
    os._exit(70)  # EX_SOFTWARE: the clean stop did not finish in time
