"""``dispatch(engine, call)``: the one place where a call becomes an Engine method call.

The engine process's server, the thread handle (:class:`stockade.BlockingEngine`) and the
asyncio handle (:class:`stockade.AsyncioEngine`) all run calls through it, so the Engine's API
is written once, in :mod:`stockade.protocol.calls`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from stockade.engine.engine import Engine
from stockade.protocol.calls import ENGINE_CALLS, CallBase

__all__ = ["dispatch", "subscribe"]

R = TypeVar("R")


async def dispatch(engine: Engine, call: CallBase[R]) -> R:
    """Run ``call`` on ``engine`` and return its result: awaits a coroutine method, calls a
    plain one, reads a property. Raises what the method raises; KeyError for a Struct that is
    not an Engine call, TypeError for a stream (see :func:`subscribe`). Blocks and can be
    cancelled as the method does."""
    spec = ENGINE_CALLS[type(call)]
    target: Any = getattr(engine, spec.name)
    if spec.mode == "property":
        return target  # type: ignore[no-any-return]
    if spec.mode == "stream":
        raise TypeError(f"{spec.name} is a stream: use subscribe()")
    result = target(**{name: getattr(call, name) for name in spec.fields})
    if spec.mode == "await":
        result = await result
    return result  # type: ignore[no-any-return]


def subscribe(engine: Engine, call: CallBase[R]) -> AsyncIterator[R]:
    """The async iterator of a stream call (``events``): its items are the call's ``R``.
    Raises what the method raises when called (a bad argument); the iterator raises the rest
    as it is read. KeyError for a Struct that is not an Engine call, TypeError for one that
    is not a stream."""
    spec = ENGINE_CALLS[type(call)]
    if spec.mode != "stream":
        raise TypeError(f"{spec.name} is not a stream: use dispatch()")
    method: Any = getattr(engine, spec.name)
    return method(**{name: getattr(call, name) for name in spec.fields})  # type: ignore[no-any-return]
