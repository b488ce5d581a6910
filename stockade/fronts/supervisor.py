"""``stockade serve --workers N``: one engine process, N HTTP fronts on one port, supervised.

The supervisor (this process, role ``supervisor`` in its JSON log lines) does no HTTP and holds
no stock. It:

1. makes a private directory (mode 0700) for the engine's Unix socket and the fronts'
   Prometheus files, and a fresh random ``STOCKADE_ENGINE_SECRET`` unless one is set;
2. reserves the port (``--host``/``--port``; port 0 picks one) for the whole run with a socket
   bound with ``SO_REUSEPORT`` that never listens, and gives each front, at each start, a
   socket of its own on that port (``SO_REUSEPORT``; served as hypercorn's ``fd://N`` bind,
   see :mod:`stockade.fronts.supervised`), which listens once the front is ready. The kernel
   spreads new connections evenly over the fronts' sockets by a hash of their addresses. One
   socket shared by every front was tried first: whichever front woke first accepted a whole
   burst of new connections (under wrk's 64 connections, opened at once, one front used 0.30
   of a core and the other 0.08: the first was the bottleneck). A front's socket lives only
   as long as the front: when it dies, the kernel stops sending it connections at once, and
   the few it had queued, not yet accepted (never answered, so never acknowledged), are reset;
3. starts ``stockade engine --listen unix:<dir>/engine.sock`` and waits until its socket
   exists (a PostgreSQL standby waits there for the store, as ``serve`` does);
4. starts N ``stockade serve --engine unix:<dir>/engine.sock`` fronts, and says
   ``listening`` once every front's socket listens (``/proc/net/tcp``) and ``GET /healthz``
   through the port answers 200: a load that starts then is spread over all of them.

Children run in sessions of their own (a terminal's Ctrl-C reaches the supervisor only, which
stops them in order) and watch a pipe whose write end only the supervisor holds, so they stop
themselves if it dies, kill -9 included: no orphans. Each is waited for by its pid.

Faults:

- A front that exits is started again, after a backoff that doubles from
  ``RESTART_MIN_S`` to ``RESTART_MAX_S`` while it keeps dying within ``STABLE_S`` of its start;
  the others keep serving meanwhile. Its Prometheus files are marked dead.
- The engine exiting: the fronts answer 503 ``engine-unavailable`` meanwhile; the engine is
  started again with the same backoff. An engine that exits before it listens, the first time
  or ``engine_start_attempts`` times in a row (e.g. another process owns the SQLite file, or
  the database URL is wrong), is an error that will not go away by itself: the supervisor
  stops the fronts and exits 1; the engine's own log line says why.

SIGTERM or SIGINT: each front is sent SIGTERM and drains (up to ``grace_s``, then SIGKILL);
then the engine is sent SIGTERM and commits its journal (up to ``engine_stop_s``, then
SIGKILL). A second signal during that stop SIGKILLs every child at once (what was answered
is committed: a durable engine answers after its commit). The exit code is 0 when the
engine stopped cleanly, 1 otherwise.

Metrics: fronts get ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory inside the private one,
removed at exit), for prometheus-client's multiprocess mode to sum their HTTP series.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import trio

from stockade.api.logs import log_event, set_process_role
from stockade.api.metrics import MULTIPROC_ENV
from stockade.fronts.sockets import front_socket, inode, listening_inodes, reserve_port
from stockade.fronts.supervised import LISTEN_FD, RUN_DIR, SUPERVISOR_FD

__all__ = [
    "RESTART_MAX_S",
    "RESTART_MIN_S",
    "STABLE_S",
    "Commands",
    "SupervisorSettings",
    "resolve_workers",
    "supervise",
]

#: First wait before starting a process again after it exited.
RESTART_MIN_S = 0.1
#: Longest wait before starting a process again, however often it died.
RESTART_MAX_S = 5.0
#: A process that ran this long before it exited gets the shortest wait again.
STABLE_S = 10.0
#: How often the supervisor looks for the engine's socket, and probes the port, while starting.
_POLL_S = 0.02
#: How long the engine may take to listen before the supervisor says it is still waiting.
_WAITING_S = 5.0


class SupervisorSettings(msgspec.Struct, frozen=True):
    """What ``serve --workers`` was asked for. ``front_args`` are flags passed to every front
    as they are (read timeout, streams, public holds and their bounds, engine timeout);
    ``engine_args`` likewise to the engine process (the engine's options). ``grace_s``: how long
    the fronts may drain at the stop (plus 5 s) before they are killed; ``engine_stop_s``:
    how long the engine may take to commit and stop; ``engine_start_attempts``: restarts in a
    row that never reach listening before the supervisor gives up; ``fronts_start_s``: how
    long the fronts may take to listen and answer at start."""

    workers: int
    database: str = "sqlite:///stockade.db"
    durability: str = "durable"
    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: str = ""
    engine_secret: str = ""
    front_args: tuple[str, ...] = ()
    engine_args: tuple[str, ...] = ()
    grace_s: float = 10.0
    engine_stop_s: float = 60.0
    engine_start_attempts: int = 5
    fronts_start_s: float = 60.0


class Commands(msgspec.Struct, frozen=True):
    """The commands the children run, before their flags: ``engine`` gets ``--database``,
    ``--durability`` and ``--listen``; ``front`` gets ``--engine``, ``--host``, ``--port`` and
    the settings' ``front_args``. Tests replace them with small stand-ins."""

    engine: tuple[str, ...] = (sys.executable, "-m", "stockade", "engine")
    front: tuple[str, ...] = (sys.executable, "-m", "stockade", "serve")


def resolve_workers(value: str) -> int:
    """``N`` (a positive integer) or ``auto`` (the CPUs this process may run on).
    Raises ValueError for anything else."""
    if value.strip().lower() == "auto":
        if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may use
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1
    count = int(value)
    if count < 1:
        raise ValueError(f"workers must be a positive integer or auto, not {value!r}")
    return count


class _Keeper:
    """Keeps one child running: starts it, waits for it by pid, starts it again after a
    backoff when it exits, until :meth:`stop`. ``role``/``index`` name it in log lines."""

    def __init__(
        self,
        role: str,
        index: int | None,
        argv: Sequence[str],
        env: dict[str, str],
        pass_fds: Sequence[int],
        on_exit: Callable[[int], None] | None = None,
        listen: tuple[str, int] | None = None,
    ) -> None:
        self.role = role
        self.index = index
        self.argv = list(argv)
        self.env = env
        self.pass_fds = tuple(pass_fds)
        self.on_exit = on_exit
        self.listen = listen
        self.socket_inode: int | None = None  # a front's current socket
        self.process: trio.Process | None = None
        self.stopping = False
        self.exit_code: int | None = None
        self.exited = trio.Event()
        self._backoff = trio.CancelScope()

    def _fields(self, **more: Any) -> dict[str, Any]:
        named: dict[str, Any] = {"child": self.role}
        if self.index is not None:
            named["worker"] = self.index
        return {**named, **more}

    async def spawn(self) -> trio.Process:
        """Start the child. A front gets a listening socket of its own, made here and closed
        here once the child has it: the socket lives as long as that child."""
        env, fds = self.env, self.pass_fds
        with contextlib.ExitStack() as stack:
            if self.listen is not None:
                listener = stack.enter_context(front_socket(*self.listen))
                self.socket_inode = inode(listener)
                env = {**env, LISTEN_FD: str(listener.fileno())}
                fds = (*fds, listener.fileno())
            process = await trio.lowlevel.open_process(
                self.argv, env=env, pass_fds=fds, start_new_session=True
            )
        self.process = process
        if self.stopping:  # stop() came while the process was being started
            process.send_signal(signal.SIGTERM)
        log_event("child_started", **self._fields(pid=process.pid))
        return process

    async def wait(self, process: trio.Process) -> int:
        code = await process.wait()
        self.exit_code = code
        if self.on_exit is not None:
            self.on_exit(process.pid)
        if not self.stopping:
            log_event("child_exited", **self._fields(pid=process.pid, exit_code=code))
        return code

    async def backoff(self, delay_s: float) -> None:
        """Wait ``delay_s`` before a restart; :meth:`stop` cuts it short."""
        self._backoff = trio.CancelScope()
        if self.stopping:
            return
        log_event("child_restarting", **self._fields(delay_s=delay_s))
        with self._backoff:
            await trio.sleep(delay_s)

    async def keep_running(
        self,
        grace_s: float,
        *,
        prepare: Callable[[], Awaitable[None]] | None = None,
        watch: Callable[[trio.Process], Awaitable[None]] | None = None,
        may_restart: Callable[[int], bool] | None = None,
    ) -> None:
        """Start the child, wait for it by pid, start it again after a backoff when it exits,
        until :meth:`stop` or until ``may_restart(exit_code)`` says no. ``prepare`` runs before
        each start, ``watch`` after it (the child running). Cancelled, it stops the child
        (SIGTERM, SIGKILL after ``grace_s``) before returning; ``exited`` is set at the end."""
        delay_s = 0.0
        try:
            while not self.stopping:
                if prepare is not None:
                    await prepare()
                process = await self.spawn()
                started = trio.current_time()
                if watch is not None:
                    await watch(process)
                code = await self.wait(process)
                if self.stopping or (may_restart is not None and not may_restart(code)):
                    return
                delay_s = _next_backoff(delay_s, trio.current_time() - started)
                await self.backoff(delay_s)
        finally:
            await self.kill_if_running(grace_s)
            self.exited.set()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop restarting, and send ``sig`` to the child if it runs. Never blocks."""
        self.stopping = True
        self._backoff.cancel()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def kill_if_running(self, grace_s: float) -> None:
        """SIGTERM the child, SIGKILL it after ``grace_s``, and wait for it (shielded: this
        runs on the way out of a cancelled supervisor)."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with trio.CancelScope(shield=True):
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(grace_s):
                await process.wait()
                return
            process.kill()
            await process.wait()


def _next_backoff(previous_s: float, lived_s: float) -> float:
    if lived_s >= STABLE_S:
        return RESTART_MIN_S
    return min(RESTART_MAX_S, max(RESTART_MIN_S, previous_s * 2))


class _Supervisor:
    def __init__(
        self,
        settings: SupervisorSettings,
        commands: Commands,
        reserved: socket.socket,
        run_dir: str,
        lifeline: int,
    ) -> None:
        self.settings = settings
        self.socket_path = os.path.join(run_dir, "engine.sock")
        self.metrics_dir = os.path.join(run_dir, "metrics")
        os.mkdir(self.metrics_dir, 0o700)
        engine_url = f"unix:{self.socket_path}"
        env = {
            **os.environ,
            "STOCKADE_ENGINE_SECRET": settings.engine_secret,
            "STOCKADE_ADMIN_TOKEN": settings.admin_token,
            "STOCKADE_WORKERS": "1",  # a child never supervises in turn
            SUPERVISOR_FD: str(lifeline),
            RUN_DIR: run_dir,
        }
        engine_argv = [*commands.engine, "--database", settings.database,
                       "--durability", settings.durability, "--listen", engine_url,
                       *settings.engine_args]  # fmt: skip
        self.engine = _Keeper("engine", None, engine_argv, env, [lifeline])
        host, port = reserved.getsockname()[:2]
        self.address = (host, port)
        front_env = {**env, MULTIPROC_ENV: self.metrics_dir}
        front_argv = [*commands.front, "--engine", engine_url, "--host", settings.host,
                      "--port", str(port), *settings.front_args]  # fmt: skip
        exited = self._front_exited
        self.front_keepers = [
            _Keeper("front", i, front_argv, front_env, [lifeline], exited, listen=self.address)
            for i in range(settings.workers)
        ]
        self.fronts: list[_Keeper] = []  # those started
        self.stop_requested = trio.Event()
        self.engine_ready = trio.Event()
        self.failed: str | None = None

    def _front_exited(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.metrics_dir)  # type: ignore[no-untyped-call]

    def _fail(self, reason: str, **fields: Any) -> None:
        if self.failed is None:
            self.failed = reason
            log_event("failed", error=reason, **fields)
        self.stop_requested.set()

    async def _watch_signals(self) -> None:
        """The first SIGTERM/SIGINT stops in order; a second one, while that stop goes on
        (an impatient Ctrl-C), SIGKILLs every child at once."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.stop_requested.is_set():
                    log_event("stopping", signal=name)
                    self.stop_requested.set()
                    continue
                log_event("stopping_now", signal=name)
                for keeper in [*self.fronts, self.engine]:
                    keeper.stop(signal.SIGKILL)

    async def _run_engine(self) -> None:
        """Keep the engine running; give up (see the module docstring) when it cannot start."""
        listened, failures = False, 0

        async def prepare() -> None:
            # an earlier engine's socket is no sign of life
            await trio.Path(self.socket_path).unlink(missing_ok=True)

        async def watch(process: trio.Process) -> None:
            nonlocal listened, failures
            listened = await self._engine_listens(process)
            if listened:
                failures = 0
                log_event("engine_listening", pid=process.pid, url=f"unix:{self.socket_path}")
                self.engine_ready.set()

        def may_restart(code: int) -> bool:
            nonlocal failures
            if listened:
                return True
            failures += 1
            attempts = self.settings.engine_start_attempts
            if self.engine_ready.is_set() and failures < attempts:
                return True
            self._fail("engine-cannot-start", exit_code=code, attempts=failures)
            return False

        await self.engine.keep_running(
            self.settings.engine_stop_s, prepare=prepare, watch=watch, may_restart=may_restart
        )

    async def _engine_listens(self, process: trio.Process) -> bool:
        """Wait until the engine's socket exists (True) or it exits first (False). No
        deadline: a PostgreSQL standby waits for the owner to go; said once after
        ``_WAITING_S``."""
        said_at = trio.current_time() + _WAITING_S
        while process.poll() is None and not self.engine.stopping:
            if await trio.Path(self.socket_path).exists():
                return True
            if trio.current_time() > said_at:
                log_event("engine_waiting", pid=process.pid, waited_s=_WAITING_S,
                          why="opening the store: a standby waits here for the owner")  # fmt: skip
                said_at = float("inf")
            await trio.sleep(_POLL_S)
        return False

    async def _probe(self) -> bool:
        """Whether ``GET /healthz`` through the shared port answers 200."""
        host, port = self.address
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        try:
            with trio.fail_after(2):
                stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    await stream.send_all(b"GET /healthz HTTP/1.0\r\nHost: supervisor\r\n\r\n")
                    head = await stream.receive_some(64)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError):
            return False
        return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))

    def _fronts_listening(self) -> bool:
        """Whether every front's socket listens (True where that cannot be read)."""
        listening = listening_inodes()
        return listening is None or all(f.socket_inode in listening for f in self.fronts)

    async def _until_fronts_answer(self) -> bool:
        """Wait until every front listens and ``GET /healthz`` answers through the port: a
        load that starts then is spread over all of them."""
        with trio.move_on_after(self.settings.fronts_start_s):
            while not self.stop_requested.is_set():
                if self._fronts_listening() and await self._probe():
                    return True
                await trio.sleep(_POLL_S * 5)
            return False
        self._fail("fronts-never-answered", waited_s=self.settings.fronts_start_s)
        return False

    async def run(self, task_status: trio.TaskStatus[tuple[str, int]]) -> int:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_signals)
            nursery.start_soon(self._run_engine)
            await _first(self.engine_ready, self.stop_requested)
            if not self.stop_requested.is_set():
                for keeper in self.front_keepers:
                    self.fronts.append(keeper)
                    nursery.start_soon(keeper.keep_running, self.settings.grace_s)
                if await self._until_fronts_answer():
                    engine = f"unix:{self.socket_path}"
                    binds = [_describe(self.address)]
                    log_event("listening", binds=binds, workers=len(self.fronts), engine=engine)
                    task_status.started(self.address)
            await self.stop_requested.wait()
            await self._stop_in_order()
            nursery.cancel_scope.cancel()
        clean = self.failed is None and self.engine.exit_code in (0, None)
        log_event("stopped", exit_code=self.engine.exit_code, failed=self.failed)
        return 0 if clean else 1

    async def _stop_in_order(self) -> None:
        """Fronts first (they drain), then the engine (it commits); each SIGKILLed if it
        overstays its deadline."""
        for keeper in self.fronts:
            keeper.stop()
        with trio.move_on_after(self.settings.grace_s + 5):
            for keeper in self.fronts:
                await keeper.exited.wait()
        for keeper in self.fronts:
            keeper.stop(signal.SIGKILL)
            await keeper.exited.wait()
        self.engine.stop()
        with trio.move_on_after(self.settings.engine_stop_s):
            await self.engine.exited.wait()
        if not self.engine.exited.is_set():
            log_event("engine_killed", waited_s=self.settings.engine_stop_s)
            self.engine.stop(signal.SIGKILL)
            await self.engine.exited.wait()


async def _first(*events: trio.Event) -> None:
    """Return once any of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


def _describe(address: tuple[str, int]) -> str:
    host, port = address
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextmanager
def _private_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="stockade-")  # mode 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def supervise(
    settings: SupervisorSettings,
    commands: Commands | None = None,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the engine and ``settings.workers`` fronts until SIGTERM/SIGINT or a failure that
    will not go away (see the module docstring); return the exit code. ``task_status`` gets
    the bound ``(host, port)`` once a front answers. Raises OSError when the port cannot be
    bound (before anything is started)."""
    set_process_role("supervisor")  # on every log line of this process
    with reserve_port(settings.host, settings.port) as reserved, _private_dir() as run_dir:
        lifeline_read, lifeline_write = os.pipe()  # neither end inheritable unless passed
        try:
            log_event("starting", workers=settings.workers, database=settings.database,
                      durability=settings.durability)  # fmt: skip
            supervisor = _Supervisor(settings, commands or Commands(), reserved, run_dir,
                                     lifeline_read)  # fmt: skip
            return await supervisor.run(task_status)
        finally:
            os.close(lifeline_read)
            os.close(lifeline_write)
