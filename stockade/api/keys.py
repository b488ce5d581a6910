"""The server's API keys: its :class:`~stockade.api.auth.KeyRing` kept in step with the store.

A key made or revoked through this server (``/v1/keys``) is accepted or refused from the next
request on: the guard changes as soon as the store has the change. A key made or revoked by
another process (``stockade keys``) is seen within ``refresh_s`` (1 s by default): :meth:`run`
re-reads the key table that often, off the trio thread (SQLite through a worker thread,
PostgreSQL through its own session), and swaps the guard's keys in one step, so requests never
wait for it. Every read and write of the table by this process holds one lock, so a refresh
can never put back a key revoked meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import msgspec
import trio

from stockade.api.auth import KeyRing
from stockade.api.logs import log_event
from stockade.engine.orders import from_timestamp
from stockade.errors import EngineUnavailable
from stockade.persistence.journal import StoreUnavailable
from stockade.persistence.keys import KeyRecord, KeyRole, KeyTable, make_key

__all__ = ["ApiKey", "ApiKeys", "KeyPage", "NewKey"]


class ApiKey(msgspec.Struct, frozen=True):
    """A key as the API shows it: never its secret, nor the secret's hash."""

    id: str
    name: str
    role: KeyRole
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: KeyRecord) -> ApiKey:
        revoked = None if record.revoked_at is None else from_timestamp(record.revoked_at)
        return cls(record.id, record.name, record.role, from_timestamp(record.created_at),
                   revoked)  # fmt: skip


class NewKey(ApiKey, frozen=True):
    """A key just made: ``key`` is shown this once and kept nowhere."""

    key: str


class KeyPage(msgspec.Struct):
    items: list[ApiKey]


class ApiKeys:
    """Makes, lists and revokes keys in ``table`` and keeps ``guard`` in step with it.

    Every method may raise StoreUnavailable (the database cannot be reached right now). A call
    waits for the table lock (held for one read or write at a time); cancelling it while the
    table works leaves the table's own rules (see :mod:`stockade.persistence.keys`).
    """

    def __init__(
        self, table: KeyTable, guard: KeyRing, *, refresh_s: float = 1.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.table = table
        self.guard = guard
        self.refresh_s = refresh_s
        self.wall_clock = wall_clock
        self._lock = trio.Lock()
        self._seen: list[KeyRecord] | None = None

    async def refresh(self) -> None:
        """Re-read the table into the guard."""
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:
        records = await self.table.keys()
        self.guard.replace(records)
        if records != self._seen:
            self._seen = records
            log_event("keys_loaded", keys=len(self.guard))

    async def create(self, role: str, name: str) -> tuple[KeyRecord, str]:
        """A new key of ``role``: its row and the key string (to show once). InvalidRequest
        for a bad role or name, before anything is written."""
        record, key = make_key(role, name, self.wall_clock())
        async with self._lock:
            await self.table.add(record)
            await self._reload()
        return record, key

    async def keys(self) -> list[KeyRecord]:
        async with self._lock:
            return await self.table.keys()

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke the key (idempotent) and refuse it from now on; None for an unknown id."""
        async with self._lock:
            record = await self.table.revoke(key_id, self.wall_clock())
            if record is not None:
                await self._reload()
            return record

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the keys once (errors propagate: a server must not start without them), then
        re-read them every ``refresh_s`` until cancelled. A read that fails is logged and the
        keys already read stay in force until one succeeds (a front's engine away, too). Each
        read that finds a change logs ``keys_loaded``."""
        await self.refresh()
        task_status.started()
        while True:
            await trio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except (StoreUnavailable, EngineUnavailable) as exc:
                log_event("keys_refresh_failed", error=str(exc))
