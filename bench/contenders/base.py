"""What every contender in the comparison bench provides.

A :class:`Contender` is one way of selling stock (stockade in some configuration, or an
approach people pick instead). For each run it opens a :class:`Market`: products stocked, ready
for callers. Each caller gets its own ``place`` function (an HTTP contender gives each its own
connection). After the callers stop, :meth:`Market.report` reads the contender's own store, not
the bench's tally, so that the verification compares two independent accounts of the run.
"""

from __future__ import annotations

import abc
import enum
import socket
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import ClassVar, Literal

from bench.workloads import Lines

__all__ = ["Contender", "Market", "Outcome", "Place", "StoreReport", "reachable"]


class Outcome(enum.Enum):
    """A definite answer to one order. Anything else (an exception) is an indefinite answer:
    the caller cannot know whether stock was taken."""

    PLACED = "placed"
    OUT_OF_STOCK = "out_of_stock"
    #: refused to protect itself (stockade's Overloaded, HTTP 503): nothing was taken
    OVERLOADED = "overloaded"


Place = Callable[[Lines], Awaitable[Outcome]]


@dataclass(frozen=True)
class StoreReport:
    """What the contender's own store holds after a run."""

    #: units left per sku (``on_hand`` for stockade, the stock counter for the others)
    remaining: dict[str, int]
    #: orders the store holds as sold
    orders: int
    #: units still held by open reservations, where the store keeps such a thing
    reserved: dict[str, int] | None = None


class Market(abc.ABC):
    """One run's products, stocked. Used from one event loop (the contender's backend)."""

    @abc.abstractmethod
    async def caller(self) -> Place:
        """A place-order function for one caller (connects here, before the clock starts)."""

    @abc.abstractmethod
    async def report(self) -> StoreReport:
        """Read the contender's store for these products (after every caller has stopped)."""


class Contender(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    #: the event loop its client library needs
    backend: ClassVar[Literal["trio", "asyncio"]]

    def prepare(self) -> str | None:
        """Get ready for a series of runs (start a server, check one answers). Returns why
        the contender must be skipped, or None."""
        return None

    def finish(self) -> None:  # noqa: B027 - most contenders have nothing to undo
        """Undo :meth:`prepare`."""

    @abc.abstractmethod
    def market(self, run: str, stock: dict[str, int]) -> AbstractAsyncContextManager[Market]:
        """Open a market holding ``stock``; ``run`` is unique to the run (a prefix for names
        in a shared server)."""


def reachable(host: str, port: int, timeout_s: float = 2.0) -> str | None:
    """None when something accepts TCP connections at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"
