"""``dispatch(engine, call)``: the one place where a call becomes an Engine method call.

The engine process's server, the thread handle (:class:`stockade.BlockingEngine`) and the
asyncio handle (:class:`stockade.AsyncioEngine`) all run calls through it, so the Engine's API
is written once, in :mod:`stockade.protocol.calls`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from msgspec.structs import asdict

from stockade.engine.engine import Engine
from stockade.protocol.calls import ENGINE_CALLS, CallBase

__all__ = ["dispatch", "dispatch_now", "next_item", "start_stream", "subscribe"]

R = TypeVar("R")


async def dispatch(engine: Engine, call: CallBase[R]) -> R:
    """Run ``call`` on ``engine`` and return its result: awaits a coroutine method, calls a
    plain one, reads a property. Raises what the method raises; KeyError for a Struct that is
    not an Engine call, TypeError for a stream (see :func:`subscribe`). Blocks and can be
    cancelled as the method does."""
    mode, result = _invoke(engine, call, _NOT_STREAMS, "is a stream: use subscribe()")
    if mode == "await":
        result = await result
    return result  # type: ignore[no-any-return]


def dispatch_now(engine: Engine, call: CallBase[R]) -> R:
    """Run a call that never blocks (a plain method or a property: ``has_product``,
    ``statistics``, ``feed_head``...) and return its result. Raises what the method raises;
    TypeError for a call that must be awaited (see :func:`dispatch`)."""
    _, result = _invoke(engine, call, _AT_ONCE, "must be awaited: use dispatch()")
    return result  # type: ignore[no-any-return]


def subscribe(engine: Engine, call: CallBase[R]) -> AsyncIterator[R]:
    """The async iterator of a stream call (``events``): its items are the call's ``R``.
    Raises what the method raises when called (a bad argument); the iterator raises the rest
    as it is read. KeyError for a Struct that is not an Engine call, TypeError for one that
    is not a stream."""
    _, reader = _invoke(engine, call, _STREAMS, "is not a stream: use dispatch()")
    return reader  # type: ignore[no-any-return]


async def start_stream(engine: Engine, call: CallBase[R]) -> AsyncIterator[R]:
    """:func:`subscribe` as a coroutine taking the engine first: for the thread handles,
    which run every step on the engine thread (``EngineThread.enqueue``)."""
    return subscribe(engine, call)


async def next_item(engine: Engine, items: AsyncIterator[R]) -> R:
    """The next item of a stream :func:`start_stream` opened, read on the engine thread.
    Raises what the stream raises (FeedGone, EngineClosed...). Cancellable."""
    return await items.__anext__()


_NOT_STREAMS = frozenset({"await", "sync", "property"})
_AT_ONCE = frozenset({"sync", "property"})
_STREAMS = frozenset({"stream"})


def _invoke(
    engine: Engine, call: CallBase[Any], modes: frozenset[str], refusal: str
) -> tuple[str, Any]:
    """The call's mode and what its method returned (a coroutine, for ``await``: not yet
    awaited); TypeError naming ``refusal`` for a call of another mode (nothing is called)."""
    spec = ENGINE_CALLS[type(call)]
    if spec.mode not in modes:
        raise TypeError(f"{spec.name} {refusal}")
    target: Any = getattr(engine, spec.name)
    if spec.mode == "property":
        return spec.mode, target
    return spec.mode, target(**asdict(call))
