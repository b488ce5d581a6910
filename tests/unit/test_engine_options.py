"""EngineOptions is the one declaration of the engine's options: every entry point takes
exactly its fields as keyword parameters, with its defaults, and hands them on whole."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import stockade
from stockade._open import EngineOptions
from stockade.embedding.thread import EngineThread
from stockade.errors import InvalidRequest

#: What each entry point takes besides the engine's options.
ENTRY_POINTS: list[tuple[str, Callable[..., Any], set[str]]] = [
    ("open_engine", stockade.open_engine, {"store", "durability"}),
    ("EngineThread", EngineThread.__init__, {"clock", "store", "durability"}),
    ("run_in_thread", stockade.run_in_thread, {"timeout", "clock", "store", "durability"}),
    ("open_asyncio_engine", stockade.open_asyncio_engine, {"clock", "store", "durability"}),
]


@pytest.mark.parametrize(("name", "entry", "own"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_entry_point_takes_every_option_with_its_default(
    name: str, entry: Callable[..., Any], own: set[str]
) -> None:
    keywords = [p for p in inspect.signature(entry).parameters.values() if p.kind is p.KEYWORD_ONLY]
    options = [p for p in keywords if p.name not in own]
    assert {p.name for p in keywords} - {p.name for p in options} == own, name
    assert [p.name for p in options] == list(EngineOptions.__struct_fields__), name
    defaults = EngineOptions()
    for p in options:
        assert p.default == getattr(defaults, p.name), f"{name}: {p.name}"


def test_from_arguments_picks_the_fields_and_nothing_else() -> None:
    arguments = {name: object() for name in EngineOptions.__struct_fields__}
    options = EngineOptions.from_arguments({**arguments, "store": None, "clock": None})
    for name, value in arguments.items():
        assert getattr(options, name) is value
    with pytest.raises(KeyError):
        EngineOptions.from_arguments({"mailbox_size": 1})


def test_engine_thread_hands_its_options_on() -> None:
    """An option given to run_in_thread reaches the engine: a bad one is refused at start,
    a good one bounds what the engine grants."""
    with (
        pytest.raises(InvalidRequest, match="journal_size"),
        stockade.run_in_thread(journal_size=0),
    ):
        pass  # pragma: no cover
    with stockade.run_in_thread(max_hold=timedelta(seconds=5)) as engine:
        engine.set_stock("sku-1", 3)
        with pytest.raises(InvalidRequest):
            engine.place_order({"sku-1": 1}, hold_for=timedelta(seconds=6))
