"""Orders as a plain, synchronous state machine: statuses, transitions, idempotency keys.

No trio, no clock, no I/O: every method takes ``now`` (UNIX seconds) and returns the new Order
snapshot with the event to journal, or raises without changing anything. The engine turns each
transition into commands for the product actors.

Transitions: reserved → confirmed | cancelled | expired; confirmed → cancelled (a return).
``confirm`` and ``cancel`` repeated return the order as it is and emit nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from stockade.engine.events import OrderCancelled, OrderConfirmed, OrderExpired, OrderPlaced
from stockade.engine.models import Order
from stockade.errors import IdempotencyConflict, InvalidTransition, OrderNotFound

__all__ = ["OrderBook", "from_timestamp"]

_replace = msgspec.structs.replace


def from_timestamp(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class OrderBook:
    """Every order the engine knows, and the idempotency keys still remembered.

    Expiry times are kept as UNIX seconds beside the Order snapshots (``_deadlines``), so the
    hot paths compare floats rather than datetimes.
    """

    def __init__(self, key_ttl_s: float) -> None:
        self.key_ttl_s = key_ttl_s
        self.orders: dict[str, Order] = {}
        self._deadlines: dict[str, float] = {}
        self._keys: dict[str, str] = {}
        self._key_forget: deque[tuple[float, str]] = deque()

    # -- idempotency --------------------------------------------------------------------------

    def by_key(self, key: str, lines: dict[str, int], now: float) -> Order | None:
        """The order placed earlier with ``key``, or None. Raises IdempotencyConflict when
        that order has other lines."""
        self._forget_keys(now)
        order_id = self._keys.get(key)
        if order_id is None:
            return None
        order = self.orders[order_id]
        if order.lines != lines:
            raise IdempotencyConflict(key, order_id)
        return order

    def _forget_keys(self, now: float) -> None:
        forget = self._key_forget
        while forget and forget[0][0] <= now:
            _, key = forget.popleft()
            self._keys.pop(key, None)

    # -- transitions --------------------------------------------------------------------------

    def place(
        self,
        order_id: str,
        lines: dict[str, int],
        now: float,
        created_at: datetime,
        expires_at: float | None,
        key: str | None,
    ) -> tuple[Order, OrderPlaced]:
        """Record an order whose lines the actors have all taken."""
        if expires_at is None:
            order = Order(order_id, "confirmed", lines, created_at, None, key)
        else:
            order = Order(order_id, "reserved", lines, created_at, from_timestamp(expires_at), key)
            self._deadlines[order_id] = expires_at
        self.orders[order_id] = order
        if key is not None:
            self._keys[key] = order_id
            self._key_forget.append((now + self.key_ttl_s, key))
        return order, OrderPlaced(order, now)

    def get(self, order_id: str) -> Order:
        order = self.orders.get(order_id) if type(order_id) is str else None
        if order is None:
            raise OrderNotFound(str(order_id))
        return order

    def deadline(self, order_id: str) -> float | None:
        """The hold's deadline (UNIX seconds) while the order is reserved."""
        return self._deadlines.get(order_id)

    def lapsed(self, order_id: str, now: float) -> bool:
        deadline = self._deadlines.get(order_id)
        return deadline is not None and now >= deadline

    def expire(self, order_id: str, now: float) -> tuple[Order, OrderExpired] | None:
        """Expire the order if it is reserved and its deadline has passed; else None."""
        if not self.lapsed(order_id, now):
            return None
        order = self._move(order_id, "expired")
        return order, OrderExpired(order_id, order.lines, now)

    def confirm(self, order_id: str, now: float) -> tuple[Order, OrderConfirmed | None]:
        """Confirm a reserved order. An already confirmed order is returned as it is.

        The caller expires lapsed holds first (:meth:`expire`), so a confirm after the
        deadline meets an expired order and raises InvalidTransition.
        """
        order = self.get(order_id)
        if order.status == "confirmed":
            return order, None
        if order.status != "reserved" or self.lapsed(order_id, now):
            raise InvalidTransition(order_id, order.status, "confirm")
        order = self._move(order_id, "confirmed")
        return order, OrderConfirmed(order_id, order.lines, now)

    def cancel(self, order_id: str, now: float) -> tuple[Order, OrderCancelled | None]:
        """Cancel a reserved order (release) or a confirmed one (return). An order already
        cancelled or expired is returned as it is: it holds no stock either way."""
        order = self.get(order_id)
        was = order.status
        if was == "cancelled" or was == "expired":
            return order, None
        assert was == "reserved" or was == "confirmed"
        order = self._move(order_id, "cancelled")
        return order, OrderCancelled(order_id, order.lines, now, was=was)

    def _move(self, order_id: str, status: str) -> Order:
        order = _replace(self.orders[order_id], status=status)
        self.orders[order_id] = order
        self._deadlines.pop(order_id, None)
        return order

    # -- start-up -----------------------------------------------------------------------------

    def restore(self, orders: Iterable[Order], key_times: dict[str, float]) -> None:
        """Load orders from a store. ``key_times`` maps an order id to when its idempotency
        key was first used; keys older than the retention time are not remembered."""
        for order in orders:
            self.orders[order.id] = order
            if order.status == "reserved" and order.expires_at is not None:
                self._deadlines[order.id] = order.expires_at.timestamp()
        remembered = sorted(
            (t + self.key_ttl_s, oid) for oid, t in key_times.items() if oid in self.orders
        )
        for forget_at, oid in remembered:
            key = self.orders[oid].idempotency_key
            if key is not None:
                self._keys[key] = oid
                self._key_forget.append((forget_at, key))

    def open_holds(self) -> list[tuple[float, str]]:
        """Every reserved order's ``(deadline, id)``."""
        return [(deadline, oid) for oid, deadline in self._deadlines.items()]
