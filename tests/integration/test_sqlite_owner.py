"""SQLite: one process owns a database file; a second gets a clear error, then may take over."""

from __future__ import annotations

import signal

import pytest
import trio

import stockade
from stockade import StoreInUse
from tests.integration.crashes import spawn_worker


async def test_a_second_engine_on_the_same_file_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'stock.db'}"
    async with stockade.open_engine(url) as first:
        await first.set_stock("a", 1)
        with pytest.raises(StoreInUse, match="owned by another stockade process"):
            async with stockade.open_engine(url):
                pass  # pragma: no cover
        assert (await first.stock("a")).on_hand == 1  # the owner is unaffected
    async with stockade.open_engine(url) as second:  # free once the owner closed
        assert (await second.stock("a")).on_hand == 1


async def test_another_process_is_refused_until_the_owner_is_killed(tmp_path):
    url = f"sqlite:///{tmp_path / 'stock.db'}"
    owner = spawn_worker(url)  # its output is read in a thread below
    try:
        assert owner.stdout is not None
        assert await trio.to_thread.run_sync(owner.stdout.readline) == "ready\n"
        with pytest.raises(StoreInUse):
            async with stockade.open_engine(url):
                pass  # pragma: no cover
        owner.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(owner.wait)
        async with stockade.open_engine(url) as engine:  # the kernel freed the lock
            assert (await engine.stock("a")).on_hand > 0
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
