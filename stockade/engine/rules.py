"""A product's sale rules as plain, synchronous logic (design.md §13). No trio, no clock, no I/O.

A :class:`RuleState` lives on a product's :class:`~stockade.engine.ledger.ProductLedger` only
while the product has rules (``ledger.rules is None`` otherwise, and the actor's hot path checks
nothing else). Its actor feeds it every Take before the take and every release after it, so
the ``per_customer`` counts are decided one message at a time, in the order the actor applies
them: no rush of one customer's parallel requests can pass the limit.

**Counts.** Under ``per_customer`` the state keeps, per order, the units counted against its
customer (``units_of``, ``customer_of``) and their sum per customer (``counts``). They hold
only orders counted since ``per_customer`` last changed and still holding or bought (released
units leave at once), so memory follows the rule's live orders, not history. Each change of
an order's counted units is a :class:`~stockade.engine.changes.Counted` change left in
``pending`` for the dispatcher to journal in this order (once per actor batch), so a
store's counts equal the actor's at every committed prefix and a restart rebuilds them by
reading those rows only.

Which units a release uncounts: an order's released, expired or returned units come off its
counted units first (exact for an order counted whole, the usual case; an order placed before
the rule and grown after it may be uncounted early, never late).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from stockade.engine.changes import Counted
from stockade.engine.commands import Take
from stockade.engine.models import ProductRules
from stockade.engine.orders import from_timestamp
from stockade.engine.validation import MAX_QTY, MAX_STOCK, check_sku
from stockade.errors import InvalidRequest

__all__ = ["Refused", "RuleState", "check_rules", "replace_rules"]


class Refused(msgspec.Struct, frozen=True, gc=False):
    """A Take a rule refused (nothing taken): ``rule`` is ``"window"``, ``"per_order"``,
    ``"per_customer"`` or ``"customer"`` (a ``per_customer`` product and an order with no
    customer); ``limit``, ``counted`` and ``requested`` as LimitExceeded reports them."""

    sku: str
    rule: str
    limit: int = 0
    counted: int = 0
    requested: int = 0


class RuleState:
    """The rules of one product and, under ``per_customer``, its live counts."""

    __slots__ = ("closes_s", "counts", "customer_of", "opens_s", "pending", "rules", "units_of")

    def __init__(self, rules: ProductRules) -> None:
        self.rules = rules
        self.opens_s = None if rules.opens_at is None else rules.opens_at.timestamp()
        self.closes_s = None if rules.closes_at is None else rules.closes_at.timestamp()
        #: customer -> units counted (no entry at zero)
        self.counts: dict[str, int] = {}
        #: order id -> units counted, and its customer (no entry at zero). Plain dicts of
        #: strings and ints: the garbage collector never walks them, however many orders.
        self.units_of: dict[str, int] = {}
        self.customer_of: dict[str, str] = {}
        #: Counted changes the dispatcher journals after the message that made them
        self.pending: list[Counted] = []

    def refusal(self, take: Take, now: float) -> Refused | None:
        """Why ``take`` may not go ahead at ``now`` (UNIX seconds), or None."""
        rules = self.rules
        if not take.retake:
            if (self.opens_s is not None and now < self.opens_s) or (
                self.closes_s is not None and now >= self.closes_s
            ):
                return Refused(rules.sku, "window")
            per_order = rules.per_order
            line = take.line or take.qty
            if per_order is not None and line > per_order:
                return Refused(rules.sku, "per_order", per_order, line - take.qty, take.qty)
        per_customer = rules.per_customer
        if per_customer is not None:
            customer = take.customer
            if customer is None:
                return Refused(rules.sku, "customer", per_customer, 0, take.qty)
            counted = self.counts.get(customer, 0)
            if counted + take.qty > per_customer:
                return Refused(rules.sku, "per_customer", per_customer, counted, take.qty)
        return None

    def count(self, order_id: str, customer: str | None, qty: int, now: float) -> None:
        """``qty`` units were taken for ``order_id``: count them (under ``per_customer``)."""
        if self.rules.per_customer is None or customer is None:
            return
        self.counts[customer] = self.counts.get(customer, 0) + qty
        units = self.units_of.get(order_id, 0) + qty
        self.units_of[order_id] = units
        self.customer_of[order_id] = customer
        self.pending.append(Counted(self.rules.sku, order_id, customer, units, now))

    def release(self, order_id: str, units: int | None, now: float) -> None:
        """``units`` of ``order_id`` (None: all of them) were released, expired, given back
        or returned: they no longer count."""
        had = self.units_of.get(order_id)
        if had is None:
            return
        customer = self.customer_of[order_id]
        left = 0 if units is None else max(had - units, 0)
        total = self.counts[customer] - (had - left)
        if total:
            self.counts[customer] = total
        else:
            del self.counts[customer]
        if left:
            self.units_of[order_id] = left
        else:
            del self.units_of[order_id], self.customer_of[order_id]
        self.pending.append(Counted(self.rules.sku, order_id, customer, left, now))

    def restore(self, order_id: str, customer: str, units: int) -> None:
        """Load one order's counted units from a store (before the engine runs)."""
        if units <= 0 or self.rules.per_customer is None:
            return
        self.counts[customer] = self.counts.get(customer, 0) + units
        self.units_of[order_id] = units
        self.customer_of[order_id] = customer

    def drain(self) -> tuple[Counted, ...]:
        """The Counted changes made since the last drain (for the journal), in order."""
        pending = tuple(self.pending)
        self.pending.clear()
        return pending


def replace_rules(
    old: RuleState | None, rules: ProductRules, now: float
) -> tuple[RuleState | None, ProductRules, bool]:
    """The state after ``rules`` replace ``old`` at ``now``: None for no rules, the rules as
    kept (``counting_since`` set when ``per_customer`` changed, else carried over), and
    whether the counts restarted."""
    before = None if old is None else old.rules.per_customer
    reset = rules.per_customer != before
    if rules.per_customer is None:
        since = None
    elif reset or old is None:
        since = from_timestamp(now)
    else:
        since = old.rules.counting_since
    rules = msgspec.structs.replace(rules, counting_since=since)
    if rules.empty:
        return None, rules, reset
    state = RuleState(rules)
    if old is not None and not reset:
        state.counts, state.units_of, state.customer_of = (
            old.counts,
            old.units_of,
            old.customer_of,
        )
    return state, rules, reset


#: 10000-01-01T00:00:00Z as UNIX seconds: rules' times are before it (and from 1970 on).
_YEAR_10000 = 253_402_300_800


def check_rules(
    sku: str,
    per_order: object,
    per_customer: object,
    opens_at: object,
    closes_at: object,
    low_stock_at: object,
) -> ProductRules:
    """The rules as given, checked: limits are integers from 1 to MAX_QTY, ``low_stock_at``
    from 0 to MAX_STOCK, times aware datetimes from 1970 to 9999 (UTC) with ``closes_at``
    after ``opens_at``. Raises InvalidRequest."""
    check_sku(sku)
    for name, value in (("per_order", per_order), ("per_customer", per_customer)):
        if value is not None and (type(value) is not int or not 1 <= value <= MAX_QTY):
            raise InvalidRequest(f"{name} must be an integer from 1 to {MAX_QTY}, or None")
    if low_stock_at is not None and (
        type(low_stock_at) is not int or not 0 <= low_stock_at <= MAX_STOCK
    ):
        raise InvalidRequest(f"low_stock_at must be an integer from 0 to {MAX_STOCK}, or None")
    for name, value in (("opens_at", opens_at), ("closes_at", closes_at)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise InvalidRequest(f"{name} must be a timezone-aware datetime, or None")
        if value is not None and not 0 <= value.timestamp() < _YEAR_10000:
            raise InvalidRequest(f"{name} must be from 1970 to 9999 (UTC)")
    if isinstance(opens_at, datetime) and isinstance(closes_at, datetime) and closes_at <= opens_at:
        raise InvalidRequest("closes_at must be later than opens_at")
    opens = None if not isinstance(opens_at, datetime) else from_timestamp(opens_at.timestamp())
    closes = None if not isinstance(closes_at, datetime) else from_timestamp(closes_at.timestamp())
    return ProductRules(
        sku=sku,
        per_order=per_order,  # type: ignore[arg-type]
        per_customer=per_customer,  # type: ignore[arg-type]
        opens_at=opens,
        closes_at=closes,
        low_stock_at=low_stock_at,
    )
