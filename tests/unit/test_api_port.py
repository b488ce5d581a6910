"""The app's engine port (stockade/api/port.py): an in-process engine adapted at no cost."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

import stockade
from stockade.api.app import ApiSettings, create_app
from stockade.api.port import EnginePort, LocalBooks, LocalEngine
from stockade.engine.engine import Engine
from stockade.errors import InvalidRequest

PORT_METHODS = sorted(
    name for name, value in vars(EnginePort).items() if not name.startswith("_") and callable(value)
)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("a", 5)
        await engine.set_location("north", "North")
        await engine.set_channel("web", ["north"])
        yield engine


def test_the_port_has_engines_signatures():
    """A method of the port takes what the Engine method of that name takes (feed_head, a
    property of Engine, is a call here)."""
    for name in PORT_METHODS:
        ours = inspect.signature(getattr(EnginePort, name))
        theirs = getattr(Engine, name)
        if isinstance(theirs, property):
            assert list(ours.parameters) == ["self"], name
            continue
        expected = inspect.signature(theirs)
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
            (p.name, p.kind, p.default) for p in expected.parameters.values()
        ], name


def test_every_port_method_is_async_but_events():
    for name in PORT_METHODS:
        assert inspect.iscoroutinefunction(getattr(EnginePort, name)) == (name != "events"), name


async def test_a_local_engines_async_methods_are_the_engines_own(engine):
    port = LocalEngine(engine)
    for name in PORT_METHODS:
        theirs = getattr(Engine, name)
        ours = getattr(port, name)
        if inspect.iscoroutinefunction(theirs) or name == "events":
            assert ours.__func__ is theirs and ours.__self__ is engine, name  # no wrapper
        else:
            assert inspect.iscoroutinefunction(ours), name


async def test_a_local_engines_sync_methods_answer_as_the_engine(engine):
    port = LocalEngine(engine)
    assert await port.has_product("a") and not await port.has_product("b")
    assert await port.products() == engine.products()
    assert await port.products("a", 1) == []
    assert await port.locations() == engine.locations()
    assert await port.location_exists("north") and not await port.location_exists("south")
    assert await port.channels() == engine.channels()
    assert await port.channel_exists("web") and not await port.channel_exists("shop")
    assert await port.feed_head() == engine.feed_head
    assert (await port.statistics()).products == 1


async def test_the_app_and_its_fast_path_call_the_engine_through_a_local_port(engine):
    app = create_app(engine, ApiSettings(admin_token="t", log_requests=False))
    port = app.config["STOCKADE_ENGINE"]
    assert isinstance(port, LocalEngine) and port.engine is engine
    fast: Any = app.asgi_app
    assert fast.engine is port
    assert getattr(port.place_order, "__func__", None) is Engine.place_order
    assert create_app(port, ApiSettings(admin_token="t")).config["STOCKADE_ENGINE"] is port


async def test_local_books_without_a_store_have_nothing_to_check():
    with pytest.raises(InvalidRequest, match="no store"):
        await LocalBooks(None).check_books(10)


async def test_local_books_check_a_store():
    store = stockade.MemoryStore(keep_movements=True)
    async with stockade.open_engine(store=store, durability="durable") as checked:
        await checked.set_stock("a", 3)
    report = await LocalBooks(store).check_books(10)
    assert report.balanced and report.products == 1
