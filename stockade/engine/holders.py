"""Open holds per holder: the count behind ``serve --public-holds``' bound on how many holds one
client address may have open at once. Plain, synchronous logic: no trio, clock or I/O.

It lives in the engine, beside the orders, and not in the HTTP front: with ``serve --workers
N`` there are N fronts, and a bound a rush could pass by spreading over them is no bound. A
place call that names a ``holder`` *claims* a place before it takes any stock (so parallel
calls of one holder cannot all pass the check before any is recorded); the claim becomes the
order's once it is placed, or is given back if the order is refused. The order frees its place
when it leaves ``reserved`` (confirmed, cancelled, expired) — :class:`~stockade.engine.orders.
OrderBook` calls :meth:`Holders.finished` on each such move.

Memory is bounded: a holder is kept only while it has an open hold or a claim (never an idle
one), and at most ``max_holders`` at once; a new holder beyond that is refused with Overloaded.
Holders are not stored: after a restart the count starts empty (holds placed before it are
not counted against their holder again), which a restart's rarity makes acceptable.
"""

from __future__ import annotations

from collections.abc import Callable

from stockade.errors import InvalidRequest, Overloaded, TooManyHolds

__all__ = ["MAX_HOLDERS", "MAX_HOLDER_LENGTH", "UNLIMITED", "Holders", "check_holder"]

#: Distinct holders with open holds at once, at most (each costs ~300 bytes).
MAX_HOLDERS = 100_000
#: A holder is an opaque string (a client address): at most this long.
MAX_HOLDER_LENGTH = 128


#: The limit of a holder given no ``max_open_holds``: counted, never refused.
UNLIMITED = 2**62


def check_holder(holder: object, limit: object) -> tuple[str, int]:
    """``(holder, limit)`` if they are a holder string and a positive integer or None (no
    limit); else InvalidRequest."""
    if type(holder) is not str or not 1 <= len(holder) <= MAX_HOLDER_LENGTH:
        raise InvalidRequest(f"holder must be a string of 1 to {MAX_HOLDER_LENGTH} characters")
    if limit is None:
        return holder, UNLIMITED
    if type(limit) is not int or limit < 1:
        raise InvalidRequest(f"max_open_holds must be a positive integer, not {limit!r}")
    return holder, limit


class Holders:
    """Each holder's open holds (order ids) and claims in progress."""

    def __init__(self, max_holders: int = MAX_HOLDERS) -> None:
        self.max_holders = max_holders
        self._count: dict[str, int] = {}  # holder -> open holds + claims (never 0)
        self._orders: dict[str, set[str]] = {}  # holder -> its reserved orders
        self._holder_of: dict[str, str] = {}  # order id -> its holder

    def count(self, holder: str) -> int:
        """Open holds plus claims in progress of ``holder``."""
        return self._count.get(holder, 0)

    def orders_of(self, holder: str) -> set[str]:
        """The ids of ``holder``'s open holds (a copy)."""
        return set(self._orders.get(holder, ()))

    def claim(self, holder: str, limit: int, retry_after: Callable[[set[str]], float]) -> None:
        """Claim a place for one more hold of ``holder``: TooManyHolds if it already has
        ``limit`` (its ``retry_after_s`` is ``retry_after(the holder's open holds)``);
        Overloaded if it is a new holder and the table is full. The caller must
        :meth:`placed` or :meth:`unclaim` it."""
        count = self._count.get(holder, 0)
        if count >= limit:
            raise TooManyHolds(limit, retry_after(self.orders_of(holder)))
        if not count and len(self._count) >= self.max_holders:
            raise Overloaded(
                f"{self.max_holders} clients have anonymous holds open, the most tracked at "
                "once; retry later"
            )
        self._count[holder] = count + 1

    def unclaim(self, holder: str) -> None:
        """Give back a claim whose order was refused."""
        self._drop(holder)

    def placed(self, holder: str, order_id: str) -> None:
        """The claim became the reserved order ``order_id``."""
        self._orders.setdefault(holder, set()).add(order_id)
        self._holder_of[order_id] = holder

    def finished(self, order_id: str) -> None:
        """``order_id`` left ``reserved``: its holder (if any) has one hold fewer."""
        holder = self._holder_of.pop(order_id, None)
        if holder is None:
            return
        orders = self._orders[holder]
        orders.discard(order_id)
        if not orders:
            del self._orders[holder]
        self._drop(holder)

    def _drop(self, holder: str) -> None:
        left = self._count[holder] - 1
        if left:
            self._count[holder] = left
        else:
            del self._count[holder]

    def __len__(self) -> int:
        """Holders with an open hold or a claim."""
        return len(self._count)
