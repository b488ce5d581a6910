"""Fakes the tests share (fakes over mocks: real stores with one behaviour changed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

import stockade
from stockade import Engine, MemoryStore, Order, StoreUnavailable
from stockade.engine.feed import EventRow
from stockade.persistence.journal import Batch


class StalledStore(MemoryStore):
    """A memory store whose commits wait until :meth:`resume`: a database that hangs."""

    def __init__(self) -> None:
        super().__init__()
        self._resumed = trio.Event()

    def resume(self) -> None:
        self._resumed.set()

    def pause(self) -> None:
        """Stall the commits again, from the next one on, until :meth:`resume`."""
        if self._resumed.is_set():
            self._resumed = trio.Event()

    async def commit(self, batch: Batch) -> list[EventRow]:
        await self._resumed.wait()
        return await super().commit(batch)


@asynccontextmanager
async def stalled_hold() -> AsyncIterator[tuple[Engine, StalledStore, Order]]:
    """A durable engine over a StalledStore, with a committed hold of 1 of the 5 units of
    "a"; the store is then paused, so what follows waits for ``resume()`` to commit."""
    store = StalledStore()
    store.resume()
    async with stockade.open_engine(store=store, durability="durable") as engine:
        await engine.set_stock("a", 5)
        order = await engine.place_order({"a": 1}, hold_for=600)
        store.pause()
        yield engine, store, order


class CheckingStore(MemoryStore):
    """A memory store (keeping the movements ledger) that checks, after every batch it
    commits, that what it holds balances: every committed prefix of the journal must be a
    state without oversell in which each reserved order holds exactly what it lists.

    The SQL stores' CHECK constraints would refuse a batch that broke ``0 <= reserved <=
    on_hand``, stopping the journal; this finds such a batch without them, and more.
    """

    def __init__(self) -> None:
        super().__init__(keep_movements=True)
        self.batches_checked = 0

    async def commit(self, batch: Batch) -> list[EventRow]:
        published = await super().commit(batch)
        state = self.state
        held: dict[tuple[str, str], int] = {}
        for order in state.orders.values():
            assert set(order.allocations) == set(order.lines), (batch.last_seq, order)
            for sku, allocation in order.allocations.items():
                assert sum(allocation.values()) == order.lines[sku], (batch.last_seq, order)
                if order.status == "reserved":
                    for location, qty in allocation.items():
                        held[sku, location] = held.get((sku, location), 0) + qty
        for (sku, location), (on_hand, reserved) in state.stock.items():
            assert 0 <= reserved <= on_hand, (batch.last_seq, sku, location, on_hand, reserved)
            assert reserved == held.pop((sku, location), 0), (batch.last_seq, sku, location)
        assert not held, (batch.last_seq, held)
        self.batches_checked += 1
        return published


class UnheardStore(MemoryStore):
    """A memory store whose next commit, once :attr:`lose_answer` is set, lands and then
    reports the store unreachable: a connection lost between COMMIT and its reply. The
    journal retries a batch the store already holds."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_answer = False

    async def commit(self, batch: Batch) -> list[EventRow]:
        published = await super().commit(batch)
        if self.lose_answer:
            self.lose_answer = False
            raise StoreUnavailable("the connection was lost before COMMIT answered")
        return published
