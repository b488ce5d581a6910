"""The server tunes the collector of its own process, and only when it serves."""

from __future__ import annotations

import gc

import stockade
from stockade.api.server import GC_YOUNG_THRESHOLD, tune_gc


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        tuned = tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert tuned["gc_threshold"] == list(gc.get_threshold())
        assert tuned["gc_frozen"] == gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_the_embedded_engine_leaves_its_host_gc_alone():
    before = gc.get_threshold(), gc.get_freeze_count()
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 1)
        await engine.place_order({"a": 1})
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
