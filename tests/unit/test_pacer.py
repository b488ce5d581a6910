"""Deliveries take their share of a busy process's time, and all of an idle one's."""

from __future__ import annotations

import pytest
import trio

from stockade.outbound.pacing import Pacer


@pytest.mark.parametrize(("lasts_s", "share_used"), [(0.002, 0.1), (0.05, 0.002 / 0.068)])
def test_while_busy_attempts_take_at_most_their_share_of_the_time(lasts_s, share_used):
    pacer = Pacer(0.1)
    pacer.cost_s = 0.002  # (learnt: what an attempt takes while nothing else runs)
    now = 0.0
    attempts = 0
    while now < 10.0:  # the process stays busy; an attempt lasts lasts_s (others run too)
        now += pacer.wait_s(now, busy=True)
        pacer.spent(now, now + lasts_s, idle=False)
        now += lasts_s
        attempts += 1
    assert attempts * 0.002 / now == pytest.approx(share_used, rel=0.05)  # never above 0.1


def test_an_attempts_cost_is_learnt_while_idle_only():
    pacer = Pacer(0.1)
    for _ in range(100):
        pacer.spent(0.0, 0.004, idle=True)
    assert pacer.cost_s == pytest.approx(0.004, rel=1e-4)
    pacer.spent(0.0, 5.0, idle=False)  # slow only because others ran meanwhile
    assert pacer.cost_s == pytest.approx(0.004, rel=1e-4)
    assert pacer.wait_s(5.0, busy=True) == pytest.approx(0.036, rel=1e-4)  # 4 ms at a tenth


def test_an_idle_process_never_waits():
    pacer = Pacer(0.1)
    pacer.spent(0.0, 0.001, idle=True)
    assert pacer.wait_s(0.001, busy=False) == 0.0
    assert pacer.wait_s(0.001, busy=True) > 0.0
    unpaced = Pacer(1.0)
    unpaced.spent(0.0, 5.0, idle=True)
    assert unpaced.wait_s(5.0, busy=True) == 0.0


async def test_a_turn_waits_while_busy_and_goes_as_soon_as_the_process_is_idle(autojump_clock):
    busy = False
    pacer = Pacer(0.5, busy=lambda: busy)
    pacer.cost_s = 1.0
    pacer.spent(0.0, 1.0, idle=False)  # a 1 s attempt: 1 s to pay off while busy
    assert await pacer.turn() is True  # idle: at once
    assert trio.current_time() == 0.0
    busy = True
    assert await pacer.turn() is False  # busy: waits until the debt is paid
    assert trio.current_time() == pytest.approx(2.0)
    pacer.spent(2.0, 3.0, idle=False)  # another: 1 s more to pay off, until 4.0

    async def load_ends() -> None:
        nonlocal busy
        await trio.sleep_until(3.5)
        busy = False

    async with trio.open_nursery() as nursery:
        nursery.start_soon(load_ends)
        assert await pacer.turn() is True  # goes when the load ends, not when paid off
        assert 3.5 <= trio.current_time() <= 3.52


async def test_busy_means_other_tasks_are_waiting_to_run():
    assert not Pacer(0.1).busy()  # only this task
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0)
        assert Pacer(0.1).busy()  # the new task is waiting to run
