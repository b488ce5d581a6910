"""One product's stock as a plain, synchronous state machine. No trio, no clock, no I/O.

A :class:`ProductLedger` is fed :mod:`commands <stockade.engine.commands>` by its actor, one at a
time, and answers each with a reply (and, for merchant changes, the event to journal). It keeps
``0 <= reserved <= on_hand`` and ``reserved == sum(holds)`` after every command, and refuses a
command that would break them without changing anything.
"""

from __future__ import annotations

from stockade.engine.commands import (
    Adjust,
    Command,
    Confirm,
    GiveBack,
    Read,
    Release,
    Return,
    SetStock,
    Take,
)
from stockade.engine.events import Adjusted, StockSet
from stockade.engine.models import StockLevel
from stockade.engine.validation import MAX_STOCK
from stockade.errors import StockConflict

__all__ = ["ProductLedger", "Reply"]

#: What a command answers: ``None`` (done), an ``int`` (a Take refused: units available),
#: a StockLevel (Read), or a StockLevel with the event to journal (SetStock, Adjust).
Reply = None | int | StockLevel | tuple[StockLevel, StockSet | Adjusted]


class ProductLedger:
    """The stock of one product. ``holds`` maps order id to held quantity (``None`` when there
    are none, so that a catalogue of millions of idle products stays small)."""

    __slots__ = ("holds", "on_hand", "reserved", "sku")

    def __init__(self, sku: str, on_hand: int = 0, reserved: int = 0) -> None:
        self.sku = sku
        self.on_hand = on_hand
        self.reserved = reserved
        self.holds: dict[str, int] | None = None

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def level(self) -> StockLevel:
        return StockLevel(self.sku, self.on_hand, self.reserved, self.on_hand - self.reserved)

    def apply(self, command: Command, now: float) -> Reply:
        """Carry out ``command`` at time ``now`` (UNIX seconds) and return its reply.

        Raises StockConflict (state unchanged) for a merchant change that would break the
        invariants. Raises KeyError for a hold that does not exist: that is a bug upstream.
        """
        # Ordered by frequency: a Take is by far the most common message.
        if type(command) is Take:
            return self.take(command.order_id, command.qty, command.hold)
        if type(command) is Confirm:
            qty = self._pop_hold(command.order_id)
            self.reserved -= qty
            self.on_hand -= qty
            return None
        if type(command) is Release:
            self.reserved -= self._pop_hold(command.order_id)
            return None
        if type(command) is Read:
            return self.level()
        if type(command) is GiveBack:
            if command.hold:
                self.reserved -= self._pop_hold(command.order_id)
            else:
                self.on_hand += command.qty
            return None
        if type(command) is Return:
            self.on_hand += command.qty
            return None
        if type(command) is SetStock:
            return self._set(command.on_hand, now)
        if type(command) is Adjust:
            return self._adjust(command.delta, command.reason, now)
        raise TypeError(f"not a ledger command: {command!r}")

    def take(self, order_id: str, qty: int, hold: bool) -> int | None:
        """Take ``qty`` units for an order: None if taken, else the units available.

        ``hold`` is positional on purpose: the dispatcher calls this for every order line, and
        a keyword argument would stop CPython 3.11 from specialising the call. The caller
        passes ``command.hold``, which names it."""
        if self.on_hand - self.reserved < qty:
            return self.on_hand - self.reserved
        if hold:
            self.reserved += qty
            if self.holds is None:
                self.holds = {}
            self.holds[order_id] = qty
        else:
            self.on_hand -= qty
        return None

    def _pop_hold(self, order_id: str) -> int:
        if self.holds is None:
            raise KeyError(order_id)
        qty = self.holds.pop(order_id)
        if not self.holds:
            self.holds = None
        return qty

    def _set(self, on_hand: int, now: float) -> tuple[StockLevel, StockSet]:
        if on_hand < self.reserved:
            raise StockConflict(
                f"cannot set on_hand of {self.sku!r} to {on_hand}: "
                f"{self.reserved} units are reserved by open holds"
            )
        delta = on_hand - self.on_hand
        self.on_hand = on_hand
        return self.level(), StockSet(self.sku, on_hand, delta, now)

    def _adjust(self, delta: int, reason: str, now: float) -> tuple[StockLevel, Adjusted]:
        after = self.on_hand + delta
        if after < self.reserved:
            raise StockConflict(
                f"cannot adjust {self.sku!r} by {delta}: on_hand would be {after}, "
                f"below the {self.reserved} units reserved"
                if self.reserved
                else f"cannot adjust {self.sku!r} by {delta}: on_hand would be {after}"
            )
        if after > MAX_STOCK:
            raise StockConflict(f"cannot adjust {self.sku!r} by {delta}: above {MAX_STOCK}")
        self.on_hand = after
        return self.level(), Adjusted(self.sku, delta, reason, now)
