"""One product's stock as a plain, synchronous state machine. No trio, no clock, no I/O.

A :class:`ProductLedger` is fed :mod:`commands <stockade.engine.commands>` by its actor, one at a
time, and answers each with a reply (and, for merchant changes, the event to journal). Stock is
kept per location; it keeps ``0 <= reserved <= on_hand`` at every location and ``reserved ==
sum(holds)`` after every command, and refuses a command that would break them without changing
anything.

A product whose stock was only ever at the ``default`` location keeps no per-location table at
all (``sites is None``): the totals are that location's values. That is the single-location
shop's hot path, and what keeps a catalogue of millions small.
"""

from __future__ import annotations

from stockade.engine.allocation import AT_DEFAULT, SHARED_BELOW, add, allocate, subtract
from stockade.engine.changes import Adjusted, RulesSet, StockSet, Transferred
from stockade.engine.commands import (
    Adjust,
    Command,
    Confirm,
    GiveBack,
    Read,
    ReadLocations,
    Release,
    Return,
    SetRules,
    SetStock,
    Take,
    Transfer,
)
from stockade.engine.locations import DEFAULT_LOCATION, LocationTable, Where
from stockade.engine.models import LocationLevel, ProductRules, StockLevel
from stockade.engine.rules import Refused, RuleState, replace_rules
from stockade.engine.validation import MAX_STOCK
from stockade.errors import OutOfStock, StockConflict

__all__ = ["ProductLedger", "Reply", "TakeReply"]

#: What a command answers: ``None`` (done), a dict (a Take's allocation), an ``int`` (a Take
#: refused: units available), a StockLevel (Read), a list of LocationLevel (ReadLocations), or
#: a StockLevel / list of LocationLevel / ProductRules with the event to journal (merchant
#: changes), or a Take refused by the product's rules (Refused).
#: What a Take answers: the allocation taken, the units available, or a rule's refusal.
TakeReply = dict[str, int] | int | Refused

Reply = (
    None
    | int
    | dict[str, int]
    | StockLevel
    | list[LocationLevel]
    | Refused
    | tuple[StockLevel | list[LocationLevel], StockSet | Adjusted | Transferred]
    | tuple[ProductRules, RulesSet]
)

_DEFAULT = DEFAULT_LOCATION


class ProductLedger:
    """The stock of one product. ``on_hand`` and ``reserved`` are totals over its locations;
    ``sites`` maps location to ``[on_hand, reserved]`` (None while everything is at
    ``default``); ``holds`` maps order id to its allocation (None when there are none);
    ``rules`` is the product's :class:`~stockade.engine.rules.RuleState` (None: no rules, the
    hot path)."""

    __slots__ = ("holds", "on_hand", "reserved", "rules", "sites", "sku")

    def __init__(self, sku: str, on_hand: int = 0, reserved: int = 0) -> None:
        self.sku = sku
        self.on_hand = on_hand
        self.reserved = reserved
        self.sites: dict[str, list[int]] | None = None
        self.holds: dict[str, dict[str, int]] | None = None
        self.rules: RuleState | None = None

    # -- reading ------------------------------------------------------------------------------

    def site(self, location: str) -> tuple[int, int]:
        """``(on_hand, reserved)`` at ``location``."""
        if self.sites is None:
            return (self.on_hand, self.reserved) if location == _DEFAULT else (0, 0)
        values = self.sites.get(location)
        return (values[0], values[1]) if values is not None else (0, 0)

    def available(self, table: LocationTable, where: Where = None) -> int:
        """Units new orders may take: over active locations (in ``where``, if given)."""
        if self.sites is None:
            if table.default_active and (where is None or _DEFAULT in where):
                return self.on_hand - self.reserved
            return 0
        inactive = table.inactive
        return sum(
            v[0] - v[1]
            for loc, v in self.sites.items()
            if loc not in inactive and (where is None or loc in where)
        )

    def level(self, table: LocationTable, where: Where = None) -> StockLevel:
        """The StockLevel: totals, or over ``where``'s locations (a channel's view)."""
        if where is None:
            if self.sites is None and table.default_active:
                return StockLevel(
                    self.sku, self.on_hand, self.reserved, self.on_hand - self.reserved
                )
            return StockLevel(self.sku, self.on_hand, self.reserved, self.available(table))
        on_hand = reserved = 0
        for location in where:
            values = self.site(location)
            on_hand += values[0]
            reserved += values[1]
        return StockLevel(self.sku, on_hand, reserved, self.available(table, where))

    def level_at(self, location: str, table: LocationTable) -> LocationLevel:
        """The LocationLevel at one location (zeros where it holds none of this product)."""
        on_hand, reserved = self.site(location)
        active = location not in table.inactive
        return LocationLevel(self.sku, location, on_hand, reserved,
                             on_hand - reserved if active else 0, active)  # fmt: skip

    def location_levels(self, table: LocationTable) -> list[LocationLevel]:
        """A LocationLevel per location that holds this product's stock, in allocation order."""
        sites = self.sites if self.sites is not None else {_DEFAULT: [self.on_hand, self.reserved]}
        ordered = sorted(sites, key=table.rank().__getitem__) if len(sites) > 1 else sites
        return [self.level_at(location, table) for location in ordered]

    # -- commands -----------------------------------------------------------------------------

    def apply(self, command: Command, now: float, table: LocationTable) -> Reply:
        """Carry out ``command`` at time ``now`` (UNIX seconds) and return its reply.

        Raises StockConflict or OutOfStock (state unchanged) for a merchant change that would
        break the invariants. Raises KeyError for a hold that does not exist: a bug upstream.
        """
        # Ordered by frequency: a Take is by far the most common message.
        kind = type(command)
        rules = self.rules
        if kind is Take:
            c: Take = command  # type: ignore[assignment]
            if rules is not None:
                return self.take_ruled(c, now, table)
            return self.take(c.order_id, c.qty, c.hold, c.where, table)
        if kind is Confirm:
            allocation = self._pop_hold(command.order_id)  # type: ignore[union-attr]
            self._move(allocation, -1, -1)
            return None
        if kind is Release:
            r: Release = command  # type: ignore[assignment]
            if r.part is None:
                self._move(self._pop_hold(r.order_id), 0, -1)
            else:
                self._shrink_hold(r.order_id, r.part)
                self._move(r.part, 0, -1)
            if rules is not None:
                rules.release(r.order_id, None if r.part is None else sum(r.part.values()), now)
            return None
        if kind is Read:
            return self.level(table, command.where)  # type: ignore[union-attr]
        if kind is GiveBack:
            g: GiveBack = command  # type: ignore[assignment]
            if g.hold:
                self._shrink_hold(g.order_id, g.allocation)
                self._move(g.allocation, 0, -1)
            else:
                self._move(g.allocation, 1, 0)
            if rules is not None:
                rules.release(g.order_id, sum(g.allocation.values()), now)
            return None
        if kind is Return:
            back: Return = command  # type: ignore[assignment]
            if back.restock:
                self._move(back.allocation, 1, 0)
            if rules is not None:  # written off or not, they no longer count
                rules.release(back.order_id, sum(back.allocation.values()), now)
            return None
        if kind is ReadLocations:
            return self.location_levels(table)
        if kind is SetStock:
            s: SetStock = command  # type: ignore[assignment]
            return self._set(s.on_hand, s.location, now, table)
        if kind is Adjust:
            a: Adjust = command  # type: ignore[assignment]
            return self._adjust(a.delta, a.reason, a.location, now, table)
        if kind is Transfer:
            return self._transfer(command, now, table)  # type: ignore[arg-type]
        if kind is SetRules:
            self.rules, kept, reset = replace_rules(rules, command.rules, now)  # type: ignore[union-attr]
            return kept, RulesSet(kept, reset, now)
        raise TypeError(f"not a ledger command: {command!r}")

    def take(
        self, order_id: str, qty: int, hold: bool, where: Where, table: LocationTable
    ) -> dict[str, int] | int:
        """Take ``qty`` units for an order: the allocation if taken, else the units available
        (to the order: over the active locations it may take from).

        The arguments are positional on purpose: the dispatcher calls this for every order
        line, and keyword arguments would stop CPython 3.11 from specialising the call. The
        caller passes ``command.hold``, which names it."""
        if self.sites is None and where is None and table.default_active:  # one location
            available = self.on_hand - self.reserved
            if available < qty:
                return available
            allocation = AT_DEFAULT[qty] if qty < SHARED_BELOW else {_DEFAULT: qty}
            if hold:
                self.reserved += qty
                if self.holds is None:
                    self.holds = {order_id: allocation}
                else:
                    self._add_hold(order_id, allocation)
            else:
                self.on_hand -= qty
            return allocation
        return self._take_sites(order_id, qty, hold, where, table)

    def take_ruled(
        self, c: Take, now: float, table: LocationTable
    ) -> dict[str, int] | int | Refused:
        """A Take for a product with rules (``rules`` is not None): refused by a rule
        (Refused), or taken as :meth:`take` does and counted (the Counted change is left in
        ``rules.pending`` for the dispatcher to journal)."""
        rules = self.rules
        assert rules is not None
        refused = rules.refusal(c, now)
        if refused is not None:
            return refused
        reply = self.take(c.order_id, c.qty, c.hold, c.where, table)
        if type(reply) is dict:
            rules.count(c.order_id, c.customer, c.qty, now)
        return reply

    def _take_sites(
        self, order_id: str, qty: int, hold: bool, where: Where, table: LocationTable
    ) -> dict[str, int] | int:
        sites = self.sites
        if sites is None:  # all at default, but a channel or pin, or default is inactive
            if not table.default_active or (where is not None and _DEFAULT not in where):
                return 0
            sites = {_DEFAULT: [self.on_hand, self.reserved]}  # (a view: _move updates totals)
        inactive = table.inactive
        candidates = [
            (loc, v[0] - v[1])
            for loc, v in sites.items()
            if loc not in inactive and (where is None or loc in where)
        ]
        if len(candidates) > 1:
            rank = table.rank()
            candidates.sort(key=lambda c: rank[c[0]])
        allocation = allocate(qty, candidates, table.strategy)
        if allocation is None:
            return sum(max(a, 0) for _, a in candidates)
        if hold:
            self._move(allocation, 0, 1)
            self._add_hold(order_id, allocation)
        else:
            self._move(allocation, -1, 0)
        return allocation

    # -- holds and moves ----------------------------------------------------------------------

    def _add_hold(self, order_id: str, allocation: dict[str, int]) -> None:
        holds = self.holds
        if holds is None:
            self.holds = {order_id: allocation}
            return
        held = holds.get(order_id)
        holds[order_id] = allocation if held is None else add(held, allocation)

    def _pop_hold(self, order_id: str) -> dict[str, int]:
        if self.holds is None:
            raise KeyError(order_id)
        allocation = self.holds.pop(order_id)
        if not self.holds:
            self.holds = None
        return allocation

    def _shrink_hold(self, order_id: str, part: dict[str, int]) -> None:
        if self.holds is None:
            raise KeyError(order_id)
        left = subtract(self.holds[order_id], part)
        if left:
            self.holds[order_id] = left
        else:
            self._pop_hold(order_id)

    def _move(self, allocation: dict[str, int], on_hand_sign: int, reserved_sign: int) -> None:
        """Add ``allocation``'s units to on-hand and reserved, each times its sign."""
        sites = self.sites
        if sites is None:
            qty = allocation.get(_DEFAULT)
            if qty is not None and len(allocation) == 1:
                self.on_hand += on_hand_sign * qty
                self.reserved += reserved_sign * qty
                return
            sites = self._spread()
        for location, qty in allocation.items():
            self.on_hand += on_hand_sign * qty
            self.reserved += reserved_sign * qty
            values = sites.get(location)
            if values is None:
                values = sites[location] = [0, 0]
            values[0] += on_hand_sign * qty
            values[1] += reserved_sign * qty

    def _spread(self) -> dict[str, list[int]]:
        """Start keeping per-location values. Everything so far is at ``default``, which keeps
        its entry even at zero: ``sites is None`` means the product was created there, and a
        location that ever held the product's stock stays listed (as its store row does). A
        product created elsewhere starts with ``sites = {}`` instead (see :meth:`created_at`)."""
        if self.sites is None:
            self.sites = {_DEFAULT: [self.on_hand, self.reserved]}
        return self.sites

    @classmethod
    def created_at(cls, sku: str, location: str) -> ProductLedger:
        """A new product whose first stock is at ``location``: with no ``default`` entry
        unless that is where it is."""
        ledger = cls(sku)
        if location != _DEFAULT:
            ledger.sites = {}
        return ledger

    # -- merchant changes ---------------------------------------------------------------------

    def _set(
        self, on_hand: int, location: str, now: float, table: LocationTable
    ) -> tuple[StockLevel, StockSet]:
        before, reserved = self.site(location)
        if on_hand < reserved:
            raise StockConflict(
                f"cannot set on_hand of {self.sku!r} at {location!r} to {on_hand}: "
                f"{reserved} units are reserved there by open holds"
            )
        delta = on_hand - before
        if self.on_hand + delta > MAX_STOCK:
            raise StockConflict(f"cannot set on_hand of {self.sku!r}: above {MAX_STOCK} in all")
        self._change_on_hand(location, delta)
        return self.level(table), StockSet(self.sku, location, on_hand, delta, now)

    def _adjust(
        self, delta: int, reason: str, location: str, now: float, table: LocationTable
    ) -> tuple[StockLevel, Adjusted]:
        on_hand, reserved = self.site(location)
        after = on_hand + delta
        if after < reserved:
            where = "" if location == _DEFAULT else f" at {location!r}"
            raise StockConflict(
                f"cannot adjust {self.sku!r}{where} by {delta}: on_hand would be {after}, "
                f"below the {reserved} units reserved"
                if reserved
                else f"cannot adjust {self.sku!r}{where} by {delta}: on_hand would be {after}"
            )
        if self.on_hand + delta > MAX_STOCK:
            raise StockConflict(f"cannot adjust {self.sku!r} by {delta}: above {MAX_STOCK}")
        self._change_on_hand(location, delta)
        return self.level(table), Adjusted(self.sku, location, delta, reason, now)

    def _transfer(
        self, command: Transfer, now: float, table: LocationTable
    ) -> tuple[list[LocationLevel], Transferred]:
        on_hand, reserved = self.site(command.source)
        if on_hand - reserved < command.qty:
            raise OutOfStock({self.sku: (command.qty, on_hand - reserved)})
        self._change_on_hand(command.source, -command.qty)
        self._change_on_hand(command.destination, command.qty)
        event = Transferred(self.sku, command.qty, command.source, command.destination,
                            command.reason, now)  # fmt: skip
        return [
            self.level_at(command.source, table),
            self.level_at(command.destination, table),
        ], event

    def _change_on_hand(self, location: str, delta: int) -> None:
        if self.sites is None and location != _DEFAULT:
            self._spread()
        self.on_hand += delta
        if self.sites is not None:
            values = self.sites.get(location)
            if values is None:
                values = self.sites[location] = [0, 0]
            values[0] += delta
