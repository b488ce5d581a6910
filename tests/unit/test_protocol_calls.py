"""The one table of calls against the Engine: every public method has a call whose fields are
its parameters, and every handle built on the table has the Engine's signatures."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import stockade
from stockade import Engine
from stockade.engine.engine import FeedReader
from stockade.protocol.calls import ENGINE_CALLS, CallBase
from stockade.protocol.client import RemoteEngine
from stockade.protocol.dispatch import dispatch, subscribe

#: Engine members that are not calls: its lifecycle, run by whoever owns the engine.
NOT_CALLS = {"run", "aclose", "restore", "counters", "placed"}


def _public_engine_members() -> list[str]:
    names = {name for name in dir(Engine) if not name.startswith("_")}
    return sorted(names - NOT_CALLS)


def _parameters(function: Any) -> list[tuple[str, object]]:
    signature = inspect.signature(function)
    return [(p.name, p.default) for p in signature.parameters.values() if p.name != "self"]


def test_every_public_engine_method_has_a_call_with_its_parameters() -> None:
    by_name = {spec.name: spec for spec in ENGINE_CALLS.values()}
    for name in _public_engine_members():
        assert name in by_name, (
            f"Engine.{name} has no call: add a Struct and a row to stockade/protocol/calls.py"
        )
        spec = by_name[name]
        member = inspect.getattr_static(Engine, name)
        if isinstance(member, property):
            assert spec.mode == "property" and spec.fields == ()
            returns = typing.get_type_hints(member.fget)["return"]
            assert spec.result == returns
            continue
        method = getattr(Engine, name)
        fields = [
            (f.name, f.default if f.default is not msgspec.NODEFAULT else inspect.Parameter.empty)
            for f in msgspec.structs.fields(spec.struct)
        ]
        assert fields == _parameters(method), f"the fields of {spec.struct.__name__} drifted"
        for parameter in inspect.signature(method).parameters.values():
            assert parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
        returns = typing.get_type_hints(method)["return"]
        if spec.mode == "stream":
            assert returns is FeedReader and spec.result is stockade.Event
        else:
            assert spec.result == returns, f"{name} returns {returns}, its call {spec.result}"
            assert spec.mode == ("await" if inspect.iscoroutinefunction(method) else "sync")
    assert set(by_name) == set(_public_engine_members()), "a call names no Engine method"


@pytest.mark.parametrize("handle", [RemoteEngine, stockade.AsyncioEngine])
def test_async_handles_have_the_engines_signatures(handle: type) -> None:
    for name in _public_engine_members():
        assert hasattr(handle, name), f"{handle.__name__}.{name} is missing"
        member = inspect.getattr_static(Engine, name)
        if isinstance(member, property):
            assert inspect.iscoroutinefunction(getattr(handle, name))
            continue
        mine, theirs = getattr(handle, name), getattr(Engine, name)
        assert _kinds(mine) == _kinds(theirs), f"{handle.__name__}.{name} drifted"
        if name != "events":
            assert inspect.iscoroutinefunction(mine), f"{handle.__name__}.{name} is not async"


def test_the_blocking_handle_has_the_engines_signatures() -> None:
    for name in _public_engine_members():
        assert hasattr(stockade.BlockingEngine, name), f"BlockingEngine.{name} is missing"
        member = inspect.getattr_static(Engine, name)
        if isinstance(member, property):
            continue
        mine = getattr(stockade.BlockingEngine, name)
        assert _kinds(mine) == _kinds(getattr(Engine, name)), f"BlockingEngine.{name} drifted"


def _kinds(function: Any) -> list[tuple[str, object, object]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(function).parameters.values()
        if p.name != "self"
    ]


async def test_dispatch_runs_each_kind_of_call(engine: Engine) -> None:
    from stockade.protocol import calls as c

    level = await dispatch(engine, c.SetStockCall("sku-1", 5))
    assert level == await engine.stock("sku-1")
    assert await dispatch(engine, c.HasProductCall("sku-1")) is True
    assert await dispatch(engine, c.FeedHeadCall()) == engine.feed_head
    with pytest.raises(TypeError):
        await dispatch(engine, c.EventsCall())
    with pytest.raises(TypeError):
        subscribe(engine, c.StockCall("sku-1"))
    reader = subscribe(engine, c.EventsCall(0, ["stock.changed"]))
    event = await reader.__anext__()
    assert event.type == "stock.changed"


def test_a_call_struct_round_trips_through_msgpack() -> None:
    from datetime import UTC, datetime, timedelta

    from stockade.protocol import calls as c

    decoder = msgspec.msgpack.Decoder(typing.Union[tuple(ENGINE_CALLS)])  # noqa: UP007
    samples: list[CallBase[Any]] = [
        c.PlaceOrderCall({"a": 1}, timedelta(seconds=90), "key", None, "web"),
        c.PlaceOrderCall([("a", 1), ("b", 2)], 12.5),
        c.ListOrdersCall("reserved", datetime(2026, 1, 1, tzinfo=UTC), None, "x", 5),
        c.EventPageCall(3, 10, "order.placed"),
        c.LocationsCall(),
    ]
    for call in samples:
        assert decoder.decode(msgspec.msgpack.encode(call)) == call


_ANY_CALL: Any = typing.Union[tuple(ENGINE_CALLS)]  # noqa: UP007
_call_decoder = msgspec.msgpack.Decoder(_ANY_CALL)


@given(st.one_of([st.builds(struct) for struct in ENGINE_CALLS]))
def test_any_call_survives_the_wire(call: CallBase[Any]) -> None:
    from stockade.protocol.frames import Request, RequestIn, encode

    try:
        wire = encode(Request(7, call, "00-trace-span-01", None))
    except OverflowError:  # an integer beyond 64 bits: the client refuses it (InvalidRequest)
        assume(False)
    request = msgspec.msgpack.decode(wire[4:], type=RequestIn)
    back = _call_decoder.decode(request.call)
    assert type(back) is type(call) and request.id == 7
    assert msgspec.msgpack.encode(back) == msgspec.msgpack.encode(call)


def test_a_remote_engine_serves_as_the_http_apps_engine_port() -> None:
    """Checked by mypy (the tests are type-checked): RemoteEngine fits EnginePort."""
    from stockade.api.port import EnginePort

    def port(remote: RemoteEngine) -> EnginePort:
        return remote

    assert callable(port)
