"""bench/rules.py verifies what it times: every unit sold once, and with rules every order
counted. No timing is asserted."""

from __future__ import annotations

import pytest

from bench.rules import main, run


async def test_each_workload_sells_out_and_verifies():
    for rules, customer in ((False, False), (False, True), (True, True)):
        assert await run(2_000, 100, rules=rules, customer=customer) > 0


async def test_the_report_prints_every_row_and_the_ratio(capsys):
    await main(2_000, 100, 1)
    out = capsys.readouterr().out
    for row in ("no rules ", "no rules, customer", "rules "):
        assert row in out
    assert "rules / no rules:" in out and "yes" in out


async def test_options_that_cannot_run_are_refused():
    with pytest.raises(SystemExit):
        await main(50, 100, 1)
