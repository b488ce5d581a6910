"""Fakes the tests share (fakes over mocks: real stores with one behaviour changed)."""

from __future__ import annotations

import trio

from stockade import MemoryStore
from stockade.engine.models import Event
from stockade.persistence.journal import Batch


class StalledStore(MemoryStore):
    """A memory store whose commits wait until :meth:`resume`: a database that hangs."""

    def __init__(self) -> None:
        super().__init__()
        self._resumed = trio.Event()

    def resume(self) -> None:
        self._resumed.set()

    async def commit(self, batch: Batch) -> list[Event]:
        await self._resumed.wait()
        return await super().commit(batch)
