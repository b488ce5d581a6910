"""kill -9 at random moments during a sale with a per_customer limit: the rules and the counts
survive, the counts never pass the limit, equal what the orders say (the books check), and
every acknowledged order is there."""

from __future__ import annotations

import random

import pytest
import trio

import stockade
from stockade.persistence.audit import check_database
from stockade.persistence.books import Tally
from tests.integration.crashes import crash_database, run_and_kill
from tests.integration.rules_crash_worker import LIMIT


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_rules_and_counts_survive_kill_9(request, tmp_path, store):
    rng = random.Random(3)
    database, read = crash_database(request, tmp_path, store)
    acked: set[str] = set()
    for _cycle in range(3):
        lines = run_and_kill("tests.integration.rules_crash_worker", [database],
                             rng.uniform(0.4, 1.0))  # fmt: skip
        acked.update(line.split(" ")[0] for line in lines)
        state = read()
        assert acked <= set(state.orders), "acknowledged orders lost"
        trio.run(restarted, database)
    assert len(acked) > 50  # the load really ran


async def restarted(database: str) -> None:
    """Open the store as a restart would: the rules are there, the counts are within the limit
    and equal the store's; once closed, the books (counts included) balance."""
    async with stockade.open_engine(database) as engine:
        rules = await engine.rules("a")
        assert rules.per_customer == LIMIT
        state = engine._ledgers["a"].rules
        assert state is not None
        assert all(0 < units <= LIMIT for units in state.counts.values()), state.counts
        assert sum(state.counts.values()) == sum(state.units_of.values())
    findings: list[str] = []
    report = await check_database(database, Tally(on_finding=lambda f: findings.append(f.detail)))
    assert report.balanced, findings[:10]
