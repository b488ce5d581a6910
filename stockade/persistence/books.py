"""The books check (``stockade check``, ``GET /v1/admin/check``): does a store agree with its
own movements ledger? Pure logic, no I/O: a reader (:mod:`stockade.persistence.audit`) pushes a
store's rows in, and findings come out.

A store balances when, for every (sku, location):

* the stock row's ``on_hand`` and ``reserved`` are what the movements there add up to (no row
  counts as zeros);
* ``reserved`` is what the open holds (orders with status ``reserved``) allocate there;
* ``0 <= reserved <= on_hand``;

and every order's movements say what its status says. Summed over an order's movements at each
(sku, location) where it is allocated ``q`` units, of which ``r`` were returned and restocked
there (``Order.returned`` less ``Order.written_off``, placed by
:func:`~stockade.engine.allocation.returned_parts`):

================  ================  ===============  ==============================================
status            net ``on_hand``   net ``reserved``  movement kinds
================  ================  ===============  ==============================================
``reserved``      0                 ``q``            ``placed``; ``changed``
``confirmed``     ``-q + r``        0                ``placed``, ``confirmed`` (none for a direct
                                                     purchase, which has no deadline); ``changed``,
                                                     ``expired`` (a late payment), ``returned``,
                                                     ``written_off``
``cancelled``     0, or ``-q + r``  0                ``placed``, and one of ``cancelled``,
                  once sold                          ``returned``, ``written_off``; ``confirmed``,
                                                     ``changed``, ``expired``
``expired``       0                 0                ``placed``, ``expired``; ``changed``
================  ================  ===============  ==============================================

Each kind in the first list must be there, and no kind outside both lists; an order with units
restocked has a ``returned`` or ``cancelled`` movement, one with units written off a
``written_off`` one. An order's counts must agree with themselves: ``written_off <= returned
<= lines`` per sku; a confirmed order has units not returned, a cancelled one that had units
returned has them all back. Movements that name an order the orders table does not hold are
findings too.

The live ``per_customer`` counts (``customer_counts``, one row per counted order and product)
must agree with the orders: a row's product has a ``per_customer`` rule, its order is reserved
or confirmed, of the row's customer, with at least the row's units of the product; an order of
a customer placed after the rule was set (``counting_since``) and still reserved or confirmed
has its row, of its line's units; and no customer's rows add up past the limit. (A row whose
order is not in the orders table at all is left alone: a crash between a take and its order's
commit leaves one, and start-up ignores it.)

:class:`BooksCheck` takes the rows in two passes, orders first (they give the open holds) and
then the levels, and keeps only the open holds' sums and one order at a time, so a store of
any size is checked in memory proportional to its open holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

from stockade.engine.allocation import returned_parts
from stockade.engine.models import Order, ProductRules
from stockade.errors import CorruptStore

__all__ = [
    "FINDING_KINDS",
    "BooksCheck",
    "BooksReport",
    "CountRow",
    "Finding",
    "FindingKind",
    "LevelRow",
    "OrderMove",
    "Tally",
    "check_order",
]

FindingKind = Literal[
    "ledger",  # a stock row differs from what its movements add up to
    "holds",  # a stock row's reserved differs from what the open holds hold there
    "bounds",  # a stock row breaks 0 <= reserved <= on_hand
    "order",  # an order's movements disagree with its status, or it contradicts itself
    "orphan",  # movements name an order the orders table does not hold
    "count",  # a per_customer count disagrees with the orders or the rules
]
FINDING_KINDS: tuple[FindingKind, ...] = ("ledger", "holds", "bounds", "order", "orphan", "count")
#: One row of the counts pass: sku, order id, customer, units, and the order's status and
#: customer and its units of the sku not returned (None when the order is not in the orders
#: table).
CountRow = tuple[str, str, str, int, str | None, str | None, int | None]

#: One (sku, location) as the level pass reads it: sku, location, whether the stock table has a
#: row, the row's on_hand and reserved (0 without a row), and the sums of its movements'
#: d_on_hand and d_reserved.
LevelRow = tuple[str, str, bool, int, int, int, int]
#: An order's movements of one kind at one (sku, location), summed: kind, sku, location,
#: d_on_hand, d_reserved.
OrderMove = tuple[str, str, str, int, int]

_REQUIRED: dict[str, frozenset[str]] = {
    "reserved": frozenset({"placed"}),
    "confirmed": frozenset({"placed", "confirmed"}),
    "cancelled": frozenset({"placed"}),
    "expired": frozenset({"placed", "expired"}),
}
_BACK = frozenset({"returned", "written_off"})
_ALLOWED: dict[str, frozenset[str]] = {
    "reserved": frozenset({"placed", "changed"}),
    "confirmed": frozenset({"placed", "changed", "confirmed", "expired"}) | _BACK,
    "cancelled": frozenset({"placed", "changed", "confirmed", "cancelled", "expired"}) | _BACK,
    "expired": frozenset({"placed", "changed", "expired"}),
}


class Finding(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One way the books do not balance. ``detail`` says it in words a person can act on,
    naming the sku, location or order and both numbers; ``recorded`` is what the store's
    tables say and ``expected`` what the ledger (or the open holds) say, where the finding
    compares two numbers; ``field`` names the number (``on_hand`` or ``reserved``)."""

    kind: FindingKind
    detail: str
    sku: str | None = None
    location: str | None = None
    order_id: str | None = None
    field: str | None = None
    recorded: int | None = None
    expected: int | None = None


class BooksReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a books check found: ``balanced`` when there is no finding at all. It looked at
    ``levels`` (sku, location) pairs of ``products`` products, and ``orders`` orders of which
    ``open_holds`` were reserved; ``mismatches`` counts every finding, ``findings`` lists the
    first of them (as many as the caller asked to keep)."""

    balanced: bool
    products: int
    levels: int
    orders: int
    open_holds: int
    mismatches: int
    findings: list[Finding]


class Tally:
    """Collects findings: counts them all, keeps the first ``keep`` (None: every one), and
    hands each to ``on_finding`` as it comes (to print it at once)."""

    def __init__(
        self, keep: int | None = None, on_finding: Callable[[Finding], None] | None = None
    ) -> None:
        self.keep = keep
        self.on_finding = on_finding
        self.count = 0
        self.kept: list[Finding] = []

    def add(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.count += 1
            if self.keep is None or len(self.kept) < self.keep:
                self.kept.append(finding)
            if self.on_finding is not None:
                self.on_finding(finding)


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _signed(n: int) -> str:
    return f"{n:+d}" if n else "0"


def check_order(order: Order, moves: Iterable[OrderMove]) -> list[Finding]:
    """Whether ``order``'s movements (summed per kind and (sku, location)) say what its
    status says (see the module's table), and whether the order agrees with itself: its
    allocations add up to its lines, a hold has a deadline."""
    found: list[Finding] = []
    oid = order.id
    status = order.status
    if status not in _REQUIRED:
        return [_about(oid, f"order {oid} has an unknown status {status!r}")]
    net: dict[tuple[str, str], list[int]] = {}
    kinds: set[str] = set()
    for kind, sku, location, d_on_hand, d_reserved in moves:
        kinds.add(kind)
        sums = net.setdefault((sku, location), [0, 0])
        sums[0] += d_on_hand
        sums[1] += d_reserved
    allocations = order.allocations
    for sku in sorted(set(allocations) | set(order.lines)):
        taken = allocations.get(sku, {})
        total = sum(taken.values())
        if total != order.lines.get(sku, 0) or any(qty <= 0 for qty in taken.values()):
            found.append(Finding(
                kind="order", order_id=oid, sku=sku, recorded=total,
                expected=order.lines.get(sku, 0),
                detail=f"order {oid} ({status}): its allocations of {sku} add up to {total}, "
                f"its line says {order.lines.get(sku, 0)}",
            ))  # fmt: skip
    if status == "reserved" and order.expires_at is None:
        found.append(_about(oid, f"order {oid} is reserved but has no deadline"))
    counted, restocked = _returns(order, found)
    sold = status == "confirmed" or (status == "cancelled" and bool(order.returned))
    sites = {(sku, location) for sku, per in allocations.items() for location in per}
    for sku, location in sorted(sites | set(net)):
        qty = allocations.get(sku, {}).get(location, 0)
        back = restocked.get(sku, {}).get(location, 0)
        want_on_hand = -qty + back if sold else 0
        want_reserved = qty if status == "reserved" else 0
        got_on_hand, got_reserved = net.get((sku, location), (0, 0))
        for field, got, want in (("on_hand", got_on_hand, want_on_hand),
                                 ("reserved", got_reserved, want_reserved)):  # fmt: skip
            if got != want and counted:
                found.append(Finding(
                    kind="order", order_id=oid, sku=sku, location=location, field=field,
                    recorded=got, expected=want,
                    detail=f"order {oid} ({status}), {sku} at {location}: its movements move "
                    f"{field} by {_signed(got)}, but {_a(status)} order allocated {qty} there"
                    f"{f' with {back} restocked' if back else ''} moves it by {_signed(want)}",
                ))  # fmt: skip
    required = set(_REQUIRED[status])
    if status == "confirmed" and order.expires_at is None:
        required.discard("confirmed")  # a direct purchase: sold when placed
    if status == "cancelled" and not kinds & {"cancelled", "returned", "written_off"}:
        required.add("cancelled")
    if order.written_off:
        required.add("written_off")
    if any(restocked.values()) and not kinds & {"cancelled", "returned"}:
        required.add("returned" if status == "confirmed" else "cancelled")
    for kind in sorted(required - kinds):
        found.append(_about(oid, f"order {oid} is {status} but has no {kind!r} movement"))
    for kind in sorted(kinds - _ALLOWED[status]):
        found.append(_about(oid, f"order {oid} is {status} but has a {kind!r} movement"))
    return found


def _returns(order: Order, found: list[Finding]) -> tuple[bool, dict[str, dict[str, int]]]:
    """Whether ``order``'s return counts agree with themselves (else a finding each), and
    where its restocked units are: ``{sku: {location: units}}``."""
    oid, status = order.id, order.status
    ok = True
    for sku in sorted(set(order.returned) | set(order.written_off)):
        bought = order.lines.get(sku, 0)
        returned = order.returned.get(sku, 0)
        lost = order.written_off.get(sku, 0)
        if not 0 <= lost <= returned <= bought or returned == 0:
            ok = False
            found.append(Finding(
                kind="order", order_id=oid, sku=sku, recorded=returned, expected=bought,
                detail=f"order {oid} ({status}): {returned} of {sku} returned and {lost} "
                f"written off, of a line of {bought} (needs 0 <= written off <= returned <= "
                "line, returned > 0)",
            ))  # fmt: skip
    if order.returned and status not in ("confirmed", "cancelled"):
        ok = False
        found.append(_about(oid, f"order {oid} is {status} but has units returned"))
    every = all(order.returned.get(sku, 0) == qty for sku, qty in order.lines.items())
    if order.returned and status == "confirmed" and every:
        found.append(_about(oid, f"order {oid} is confirmed but every unit was returned"))
    if order.returned and status == "cancelled" and not every:
        ok = False
        found.append(_about(oid, f"order {oid} is cancelled but not every unit was returned"))
    restocked: dict[str, dict[str, int]] = {}
    if ok:
        for sku, allocation in order.allocations.items():
            lost = order.written_off.get(sku, 0)
            try:
                back, _ = returned_parts(allocation, order.returned.get(sku, 0) - lost, lost)
            except ValueError:  # allocations that do not add up: a finding already
                return False, {}
            restocked[sku] = back
    return ok, restocked


def _count(
    sku: str, order_id: str, detail: str, recorded: int | None = None, expected: int | None = None
) -> Finding:
    return Finding(kind="count", sku=sku, order_id=order_id, detail=detail, field="units",
                   recorded=recorded, expected=expected)  # fmt: skip


_LIVE = ("reserved", "confirmed")


def _about(order_id: str, detail: str) -> Finding:
    return Finding(kind="order", order_id=order_id, detail=detail)


class BooksCheck:
    """The check's state while a reader pushes a store's rows in, in this order:

    1. :meth:`order_row` for each row of the orders table joined with its movements (summed
       per kind and (sku, location)), all rows of one order together; then :meth:`end_orders`;
    2. :meth:`orphan` for each order id that movements name and the orders table lacks;
    3. :meth:`level_row` for each (sku, location) that has a stock row or movements; then
       :meth:`end_levels`;
    4. with ``rules`` (every product's, given at the start): :meth:`count_row` for each row of
       ``customer_counts``, then :meth:`end_counts`.

    Each returns the findings it makes. ``decode`` turns the order columns of a row into an
    Order, raising CorruptStore or ValueError for a row that cannot be one. Level rows come in
    sku order (so products are counted without keeping their skus).
    """

    def __init__(
        self, decode: Callable[[tuple[Any, ...]], Order], rules: Iterable[ProductRules] = ()
    ) -> None:
        self._decode = decode
        self._limits = {r.sku: r for r in rules if r.per_customer is not None}
        #: (sku, order id) -> (customer, units) the orders say are counted
        self._counted: dict[tuple[str, str], tuple[str, int]] = {}
        self._sums: dict[tuple[str, str], int] = {}
        self._order_id: object = None
        self._order: Order | None = None
        self._moves: list[OrderMove] = []
        self.held: dict[tuple[str, str], int] = {}  # what open holds hold, by (sku, location)
        self._unseen: dict[tuple[str, str], int] | None = None  # held where no level came yet
        self._last_sku: str | None = None
        self.products = 0
        self.orders = 0
        self.open_holds = 0
        self.levels = 0

    # -- pass 1: orders -----------------------------------------------------------------------

    def order_row(self, columns: tuple[Any, ...], move: OrderMove | None) -> list[Finding]:
        """One row: an order's columns (as ``decode`` takes them, the id first) and one sum of
        its movements, or None for an order with none."""
        found: list[Finding] = []
        if columns[0] != self._order_id:
            found = self._finish_order()
            self._order_id = columns[0]
            self.orders += 1
            try:
                self._order = self._decode(columns)
            except (ValueError, CorruptStore) as exc:
                self._order = None
                oid = str(columns[0])
                found.append(_about(oid, f"order {oid} cannot be read: {exc}"))
        if move is not None and self._order is not None:
            self._moves.append(move)
        return found

    def end_orders(self) -> list[Finding]:
        found = self._finish_order()
        self._order_id = None
        return found

    def _finish_order(self) -> list[Finding]:
        order, moves = self._order, self._moves
        self._order, self._moves = None, []
        if order is None:
            return []
        if self._limits and order.customer is not None and order.status in _LIVE:
            for sku, qty in order.lines.items():
                rule = self._limits.get(sku)
                since = None if rule is None else rule.counting_since
                kept = qty - order.returned.get(sku, 0)  # units returned no longer count
                if since is not None and order.created_at > since and kept > 0:
                    self._counted[sku, order.id] = (order.customer, kept)
        if order.status == "reserved":
            self.open_holds += 1
            held = self.held
            for sku, per in order.allocations.items():
                for location, qty in per.items():
                    held[sku, location] = held.get((sku, location), 0) + qty
        return check_order(order, moves)

    def orphan(self, order_id: str, rows: int) -> list[Finding]:
        """Movements (``rows`` of them) name ``order_id``, which the orders table lacks."""
        return [Finding(
            kind="orphan", order_id=order_id,
            detail=f"{rows} movement row(s) name order {order_id}, which is not in the orders "
            "table (a deleted order, or movements written by hand)",
        )]  # fmt: skip

    # -- pass 2: levels -----------------------------------------------------------------------

    def level_row(self, row: LevelRow) -> list[Finding]:
        sku, location, has_row, on_hand, reserved, ledger_on_hand, ledger_reserved = row
        self.levels += 1
        if sku != self._last_sku:
            self.products += 1
            self._last_sku = sku
        if self._unseen is None:
            self._unseen = dict(self.held)
        held = self._unseen.pop((sku, location), 0)
        where = f"{sku} at {location}"
        found: list[Finding] = []
        table = "the stock table" if has_row else "the stock table (no row: 0)"
        for field, recorded, summed in (("on_hand", on_hand, ledger_on_hand),
                                        ("reserved", reserved, ledger_reserved)):  # fmt: skip
            if recorded != summed:
                found.append(Finding(
                    kind="ledger", sku=sku, location=location, field=field,
                    recorded=recorded, expected=summed,
                    detail=f"{where}: {field} is {recorded} in {table}, but its movements add "
                    f"up to {summed}",
                ))  # fmt: skip
        if reserved != held:
            found.append(Finding(
                kind="holds", sku=sku, location=location, field="reserved",
                recorded=reserved, expected=held,
                detail=f"{where}: reserved is {reserved} in {table}, but the open holds "
                f"(reserved orders) hold {held} there",
            ))  # fmt: skip
        if not 0 <= reserved <= on_hand:
            found.append(Finding(
                kind="bounds", sku=sku, location=location, field="reserved",
                recorded=reserved, expected=on_hand,
                detail=f"{where}: reserved {reserved} and on_hand {on_hand} break "
                "0 <= reserved <= on_hand",
            ))  # fmt: skip
        return found

    def end_levels(self) -> list[Finding]:
        """Holds at a (sku, location) no stock row and no movement knows."""
        found = []
        unseen = self.held if self._unseen is None else self._unseen
        for (sku, location), held in sorted(unseen.items()):
            if held:
                found.append(Finding(
                    kind="holds", sku=sku, location=location, field="reserved",
                    recorded=0, expected=held,
                    detail=f"{sku} at {location}: open holds hold {held} there, but it has no "
                    "stock row and no movement",
                ))  # fmt: skip
        return found

    # -- pass 3: per_customer counts ----------------------------------------------------------

    def count_row(self, row: CountRow) -> list[Finding]:
        sku, oid, customer, units, status, order_customer, line = row
        expected = self._counted.pop((sku, oid), None)
        if status in _LIVE:  # what start-up counts
            key = (sku, customer)
            self._sums[key] = self._sums.get(key, 0) + units
        where = f"the count of {sku} for order {oid} ({customer}, {units} units)"
        if sku not in self._limits:
            return [_count(sku, oid, f"{where}: {sku} has no per_customer rule")]
        if status is None:
            return []  # its order never committed (a crash mid-take): start-up ignores it
        if status not in _LIVE or order_customer != customer or units > (line or 0):
            return [_count(sku, oid, f"{where}: the order is {status}, of customer "
                           f"{order_customer!r}, with {line or 0} units of {sku}", units,
                           line or 0)]  # fmt: skip
        if expected is not None and expected[1] != units:
            return [_count(sku, oid, f"{where}: the order counts {expected[1]}", units,
                           expected[1])]  # fmt: skip
        return []

    def end_counts(self) -> list[Finding]:
        """Counted orders with no row, and customers counted past their limit."""
        found = [
            _count(sku, oid, f"order {oid} of {customer} holds or bought {units} of {sku} "
                   "under its per_customer rule, but no count says so", 0, units)
            for (sku, oid), (customer, units) in sorted(self._counted.items())
        ]  # fmt: skip
        for (sku, customer), total in sorted(self._sums.items()):
            rule = self._limits.get(sku)
            limit = None if rule is None else rule.per_customer
            if limit is not None and total > limit:
                found.append(Finding(
                    kind="count", sku=sku, recorded=total, expected=limit,
                    detail=f"{customer} is counted {total} units of {sku}, past its "
                    f"per_customer limit of {limit}",
                ))  # fmt: skip
        return found

    def report(self, tally: Tally) -> BooksReport:
        return BooksReport(
            balanced=tally.count == 0,
            products=self.products,
            levels=self.levels,
            orders=self.orders,
            open_holds=self.open_holds,
            mismatches=tally.count,
            findings=tally.kept,
        )
