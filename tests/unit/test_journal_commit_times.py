"""The journal tells a task that waited for a commit when that commit ran (for the commit
span of a trace), only when asked to, and each waiter of one batch alike."""

from __future__ import annotations

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from stockade.engine.changes import StockSet
from stockade.persistence.journal import CommitTimes, Journal, last_commit
from stockade.persistence.memory import MemoryStore
from tests.fakes import StalledStore


def stock_set(sku: str) -> StockSet:
    return StockSet(sku=sku, location="default", on_hand=1, delta=1, at=0.0)


async def test_every_waiter_of_a_batch_learns_its_commit_times():
    store = StalledStore()
    journal = Journal(store, record_commits=True)
    seen: dict[str, CommitTimes | None] = {}

    async def waiter(sku: str) -> None:
        seq = journal.append((stock_set(sku),))
        await journal.wait_durable(seq)
        seen[sku] = last_commit.get()  # in this task's own context

    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        for sku in ("a", "b", "c"):
            nursery.start_soon(waiter, sku)
        await wait_all_tasks_blocked()  # all three in the one stalled batch
        assert seen == {}
        store.resume()
        await journal.aclose()
    times = seen["a"]
    assert times is not None and times.events == 3
    assert 0 < times.start_ns <= times.end_ns
    assert seen == {"a": times, "b": times, "c": times}
    assert last_commit.get() is None  # the waiters' contexts, not ours


@pytest.mark.parametrize(("record_commits", "durability"), [(False, "durable"), (True, "fast")])
async def test_no_commit_times_unless_recorded_and_waited_for(record_commits, durability):
    journal = Journal(MemoryStore(), durability=durability, record_commits=record_commits)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        seq = journal.append((stock_set("a"),))
        await journal.wait_durable(seq)
        assert last_commit.get() is None
        await journal.aclose()
