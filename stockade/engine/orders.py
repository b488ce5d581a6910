"""Orders as a plain, synchronous state machine: statuses, transitions, idempotency keys and
retirement. No trio, no clock, no I/O: every method takes ``now`` (UNIX seconds) and returns the
new Order snapshot with the event to journal, or raises without changing anything. The engine
turns each transition into commands for the product actors.

Transitions: reserved → confirmed | cancelled | expired; expired → confirmed (a late payment,
its units taken again); confirmed → cancelled (a return of every unit left, or the partial
return that brings back the last one); a reserved order may also change its lines and extend
its deadline, a confirmed one have some units returned. ``confirm`` and ``cancel`` repeated
return the order as it is and emit nothing.

**Idempotency keys** name one use each: placing an order, or changing or extending one. A key is
remembered for ``key_ttl_s`` after its use, with a fingerprint of the request (the lines asked
for, or the hold asked for), so a retry with the same request is answered with the order as it
is now, and the same key with another request is an IdempotencyConflict.

**Retirement**: a finished order (confirmed, cancelled, expired) stays in memory until its
idempotency window has passed (``created_at + key_ttl_s``, and every key naming it forgotten)
and the journal has committed its last move; then :meth:`retire_due` drops it. The store keeps
it; the engine reads it back from there when asked.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Container, Iterable
from datetime import UTC, datetime

import msgspec

from stockade.engine.allocation import first_units, returned_parts, subtract
from stockade.engine.changes import (
    OrderCancelled,
    OrderChanged,
    OrderConfirmed,
    OrderExpired,
    OrderExtended,
    OrderPlaced,
    OrderReturned,
)
from stockade.engine.holders import Holders
from stockade.engine.models import Allocations, KeyUse, Order, OrderStatus
from stockade.errors import IdempotencyConflict, InvalidTransition, OrderNotFound, ReturnConflict

__all__ = ["OrderBook", "from_timestamp"]

_replace = msgspec.structs.replace


def from_timestamp(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class OrderBook:
    """The orders the engine keeps in memory and the idempotency keys still remembered.

    Expiry times are kept as UNIX seconds beside the Order snapshots (``_deadlines``), so the
    hot paths compare floats rather than datetimes.
    """

    def __init__(self, key_ttl_s: float, max_lifetime_s: float = float("inf")) -> None:
        self.key_ttl_s = key_ttl_s
        self.max_lifetime_s = max_lifetime_s
        self.orders: dict[str, Order] = {}
        self._deadlines: dict[str, float] = {}
        self._keys: dict[str, KeyUse] = {}
        self._key_forget: deque[tuple[float, str]] = deque()
        self._pinned: dict[str, float] = {}  # order id -> when its last key is forgotten
        #: a heap of (retire at, tie-breaker, order id, the finished snapshot, seq of the move
        #: that finished it)
        self._retiring: list[tuple[float, int, str, Order, int]] = []
        self._ties = itertools.count()
        self.retired = 0
        #: open holds per holder (anonymous holds per client address; see holders.py)
        self.holders = Holders()

    # -- idempotency --------------------------------------------------------------------------

    def recall(
        self, key: str, kind: str, fingerprint: dict[str, int] | float, now: float,
        order_id: str | None = None,
    ) -> KeyUse | None:  # fmt: skip
        """The earlier use of ``key``, or None. Raises IdempotencyConflict when it was used for
        another kind of request, another order, or another fingerprint."""
        self._forget_keys(now)
        use = self._keys.get(key)
        if use is None:
            return None
        if (
            use.kind != kind
            or use.fingerprint != fingerprint
            or (order_id is not None and use.order_id != order_id)
        ):
            raise IdempotencyConflict(key, use.order_id)
        return use

    def remember(self, use: KeyUse) -> None:
        """Remember a key until ``use.at + key_ttl_s`` (and its order in memory until then)."""
        forget_at = use.at + self.key_ttl_s
        self._keys[use.key] = use
        self._key_forget.append((forget_at, use.key))
        if self._pinned.get(use.order_id, 0.0) < forget_at:
            self._pinned[use.order_id] = forget_at

    def key_uses(self) -> list[KeyUse]:
        return list(self._keys.values())

    def _forget_keys(self, now: float) -> None:
        forget = self._key_forget
        while forget and forget[0][0] <= now:
            _, key = forget.popleft()
            use = self._keys.get(key)
            if use is not None and use.at + self.key_ttl_s <= now:
                del self._keys[key]
                if self._pinned.get(use.order_id, 0.0) <= now:
                    self._pinned.pop(use.order_id, None)

    # -- transitions --------------------------------------------------------------------------

    def place(
        self,
        order_id: str,
        lines: dict[str, int],
        allocations: Allocations,
        now: float,
        created_at: datetime,
        expires_at: float | None,
        key: str | None,
        channel: str | None = None,
        location: str | None = None,
        customer: str | None = None,
        reference: str | None = None,
        metadata: dict[str, str] | None = None,
        holder: str | None = None,
    ) -> tuple[Order, OrderPlaced]:
        """Record an order whose lines the actors have all taken. A hold placed for a
        ``holder`` (whose place the caller claimed in :attr:`holders`) counts against it
        until it leaves ``reserved``."""
        status: OrderStatus = "confirmed" if expires_at is None else "reserved"
        deadline = None if expires_at is None else from_timestamp(expires_at)
        if customer is None and reference is None and metadata is None:  # the common case
            order = Order(order_id, status, lines, created_at, deadline, key, allocations,
                          channel, location)  # fmt: skip
        else:
            order = Order(order_id, status, lines, created_at, deadline, key, allocations,
                          channel, location, customer=customer, reference=reference,
                          metadata=metadata)  # fmt: skip
        if expires_at is not None:
            self._deadlines[order_id] = expires_at
            if holder is not None:
                self.holders.placed(holder, order_id)
        self.orders[order_id] = order
        if key is not None:
            self.remember(KeyUse(key, "place", order_id, lines, now))
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
        return order, OrderExpired(order, now)

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
        return order, OrderConfirmed(order, now)

    def confirm_late(
        self, order_id: str, allocations: Allocations, now: float
    ) -> tuple[Order, OrderConfirmed]:
        """Confirm an expired order whose units the actors have taken again (sold outright)
        as ``allocations``."""
        order = self.get(order_id)
        assert order.status == "expired"
        order = _replace(order, status="confirmed", allocations=allocations)
        self.orders[order_id] = order
        return order, OrderConfirmed(order, now, late=True)

    def cancel(self, order_id: str, now: float) -> tuple[Order, OrderCancelled | None]:
        """Cancel a reserved order (release) or a confirmed one (return: the units not
        returned before come back, ``returned`` becomes every line). An order already
        cancelled or expired is returned as it is: it holds no stock either way."""
        order = self.get(order_id)
        was = order.status
        if was == "cancelled" or was == "expired":
            return order, None
        assert was == "reserved" or was == "confirmed"
        if was == "reserved":
            order = self._move(order_id, "cancelled")
            return order, OrderCancelled(order, now, was)
        moves = None
        if order.returned:  # only what is left comes back
            moves = {}
            for sku, allocation in order.allocations.items():
                written_off = order.written_off.get(sku, 0)
                restocked, lost = returned_parts(
                    allocation, order.returned.get(sku, 0) - written_off, written_off
                )
                left = subtract(subtract(allocation, restocked), lost)
                if left:
                    moves[sku] = left
        order = _replace(order, status="cancelled", returned=dict(order.lines))
        self.orders[order_id] = order
        return order, OrderCancelled(order, now, was, moves)

    def check_return(self, order_id: str, lines: dict[str, int]) -> Order:
        """The order, if ``lines`` may come back from it: it is confirmed (else
        InvalidTransition) and each line names one of its skus, at most the units bought and
        not yet returned (else ReturnConflict). Changes nothing."""
        order = self.get(order_id)
        if order.status != "confirmed":
            raise InvalidTransition(order_id, order.status, "return units of")
        for sku, qty in lines.items():
            bought = order.lines.get(sku)
            if bought is None:
                raise ReturnConflict(f"order {order_id!r} has no line for {sku!r}")
            left = bought - order.returned.get(sku, 0)
            if qty > left:
                raise ReturnConflict(
                    f"cannot return {qty} of {sku!r} from order {order_id!r}: it bought "
                    f"{bought}, and {left} of them are not returned yet"
                )
        return order

    def return_units(
        self, order_id: str, lines: dict[str, int], restock: bool, now: float
    ) -> tuple[Order, OrderReturned]:
        """Record that ``lines`` came back from a confirmed order (restocked, or written off);
        the order is cancelled once every unit is back. Raises as :meth:`check_return`.
        Restocked units come back to the order's locations in its allocation order, written
        off ones are counted from its last location back (see
        :func:`~stockade.engine.allocation.returned_parts`)."""
        order = self.check_return(order_id, lines)
        returned = dict(order.returned)
        written_off = dict(order.written_off)
        moves: Allocations = {}
        for sku, qty in lines.items():
            allocation = order.allocations[sku]
            lost = written_off.get(sku, 0)
            if restock:
                before = returned.get(sku, 0) - lost
                moves[sku] = subtract(
                    first_units(allocation, before + qty), first_units(allocation, before)
                )
            else:
                moves[sku] = subtract(
                    first_units(allocation, lost + qty, last=True),
                    first_units(allocation, lost, last=True),
                )
                written_off[sku] = lost + qty
            returned[sku] = returned.get(sku, 0) + qty
        done = all(returned.get(sku, 0) == qty for sku, qty in order.lines.items())
        order = _replace(
            order,
            status="cancelled" if done else "confirmed",
            returned=returned,
            written_off=written_off,
        )
        self.orders[order_id] = order
        return order, OrderReturned(order, now, moves, restock)

    def check_open(self, order_id: str, now: float, action: str) -> Order:
        """The order, if it is reserved and its hold has not lapsed; else InvalidTransition
        (OrderNotFound for an unknown id)."""
        order = self.get(order_id)
        if order.status != "reserved" or self.lapsed(order_id, now):
            status = "expired" if order.status == "reserved" else order.status
            raise InvalidTransition(order_id, status, action)
        return order

    def change(
        self,
        order_id: str,
        lines: dict[str, int],
        allocations: Allocations,
        moves: Allocations,
        now: float,
    ) -> tuple[Order, OrderChanged]:
        """Replace a reserved order's lines (the actors have taken and released ``moves``)."""
        order = _replace(self.orders[order_id], lines=lines, allocations=allocations)
        self.orders[order_id] = order
        return order, OrderChanged(order, now, moves)

    def extend(
        self, order_id: str, hold_s: float, now: float
    ) -> tuple[Order, OrderExtended | None]:
        """Move a reserved order's deadline to ``now + hold_s``, capped at ``created_at +
        max_lifetime_s``. A deadline already later is kept (no event). InvalidTransition for
        an order not reserved or already at its cap."""
        order = self.check_open(order_id, now, "extend")
        cap = order.created_at.timestamp() + self.max_lifetime_s
        current = self._deadlines[order_id]
        if current >= cap:
            raise InvalidTransition(
                order_id, order.status, "extend",
                f"its hold is already at the maximum lifetime ({self.max_lifetime_s:g} s after "
                "it was placed)",
            )  # fmt: skip
        deadline = min(now + hold_s, cap)
        if deadline <= current:
            return order, None
        order = _replace(order, expires_at=from_timestamp(deadline))
        self.orders[order_id] = order
        self._deadlines[order_id] = deadline
        return order, OrderExtended(order, now)

    def _move(self, order_id: str, status: str) -> Order:
        order = _replace(self.orders[order_id], status=status)
        self.orders[order_id] = order
        self._deadlines.pop(order_id, None)
        self.holders.finished(order_id)  # every move out of reserved comes here
        return order

    # -- retirement ---------------------------------------------------------------------------

    def finished(self, order: Order, seq: int, now: float) -> None:
        """Note that ``order`` (a finished snapshot) was journaled at ``seq``: it may leave
        memory once its window has passed and ``seq`` is committed."""
        retire_at = max(now, order.created_at.timestamp() + self.key_ttl_s)
        heapq.heappush(self._retiring, (retire_at, next(self._ties), order.id, order, seq))

    def retire_due(self, now: float, committed_seq: int, busy: Container[str] = frozenset()) -> int:
        """Drop the finished orders whose time has come; return how many. An order that moved
        again since (a return) is left to its newer entry; one that a remembered key still
        names waits for the key; one whose last move is not yet committed, or that a move in
        progress holds (``busy``: a late payment taking its units again), waits for that."""
        self._forget_keys(now)
        retiring = self._retiring
        waiting: list[tuple[float, int, str, Order, int]] = []
        count = 0
        while retiring and retiring[0][0] <= now:
            entry = heapq.heappop(retiring)
            _, tie, order_id, snapshot, seq = entry
            if self.orders.get(order_id) is not snapshot:
                continue  # moved again (or already gone): a newer entry decides
            pinned = self._pinned.get(order_id)
            if pinned is not None and pinned > now:
                heapq.heappush(retiring, (pinned, tie, order_id, snapshot, seq))
                continue
            if seq > committed_seq or order_id in busy:
                waiting.append(entry)
                continue
            del self.orders[order_id]
            count += 1
        for entry in waiting:
            heapq.heappush(retiring, entry)
        self.retired += count
        return count

    def next_retirement(self) -> float | None:
        return self._retiring[0][0] if self._retiring else None

    # -- start-up -----------------------------------------------------------------------------

    def restore(self, orders: Iterable[Order], keys: Iterable[KeyUse], now: float) -> None:
        """Load orders and the key uses still inside their window from a store. A finished
        order is scheduled for retirement as if its last move were committed (it is)."""
        for order in orders:
            self.load(order)
        for use in sorted(keys, key=lambda u: u.at):
            if use.at + self.key_ttl_s > now and use.order_id in self.orders:
                self.remember(use)
        for order in list(self.orders.values()):
            if order.status != "reserved":
                self.finished(order, 0, now)

    def load(self, order: Order) -> None:
        """Put one order (read back from the store) in memory."""
        self.orders[order.id] = order
        if order.status == "reserved" and order.expires_at is not None:
            self._deadlines[order.id] = order.expires_at.timestamp()

    def open_holds(self) -> list[tuple[float, str]]:
        """Every reserved order's ``(deadline, id)``."""
        return [(deadline, oid) for oid, deadline in self._deadlines.items()]
