"""The merchant's calls: stock per location, transfers, locations and channels; and the reads of
stock (design.md §2 and §7)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import trio

from stockade.engine.commands import Adjust, Read, ReadLocations, SetRules, SetStock, Transfer
from stockade.engine.core import EngineCore
from stockade.engine.ledger import ProductLedger
from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.models import Channel, Location, LocationLevel, ProductRules, StockLevel
from stockade.engine.rules import check_rules
from stockade.engine.validation import MAX_REASON_LENGTH, MAX_STOCK, check_sku, check_stock_value
from stockade.errors import InvalidRequest

__all__ = ["Merchant"]


def _check_reason(reason: object) -> str:
    if type(reason) is not str or len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(f"reason must be a string of at most {MAX_REASON_LENGTH} characters")
    return reason


class Merchant(EngineCore):
    # -- stock --------------------------------------------------------------------------------

    async def set_stock(
        self, sku: str, on_hand: int, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """Create the product or overwrite its on-hand at ``location``. Refused with
        InvalidRequest outside 0..MAX_STOCK, with its subclass StockConflict below what open
        holds reserve there (or above MAX_STOCK in all); UnknownLocation for a location never
        created."""
        check_sku(sku)
        check_stock_value("on_hand", on_hand, low=0, high=MAX_STOCK)
        self._table.location(location)
        return await self._change_product(sku, SetStock(on_hand, location), create=True)  # type: ignore[no-any-return]

    async def adjust_stock(
        self, sku: str, delta: int, reason: str = "", location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        """Move on-hand at ``location`` by ``delta`` (non-zero). Refused with StockConflict (an
        InvalidRequest) if on-hand there would fall below what is reserved (or below zero) or
        the product's rise above MAX_STOCK."""
        self._known(sku)
        check_stock_value("delta", delta, low=-MAX_STOCK, high=MAX_STOCK)
        if delta == 0:
            raise InvalidRequest("delta must not be zero")
        _check_reason(reason)
        self._table.location(location)
        return await self._change_product(sku, Adjust(delta, reason, location))  # type: ignore[no-any-return]

    async def transfer(
        self, sku: str, qty: int, source: str, destination: str, reason: str = ""
    ) -> list[LocationLevel]:
        """Move ``qty`` units on hand of ``sku`` from ``source`` to ``destination``, atomically
        (both sides are movements): the two locations' levels after it. Refused with OutOfStock
        when ``source`` has fewer than ``qty`` available (on hand and not reserved); with
        InvalidRequest for the same location twice or ``qty`` below 1. Inactive locations may
        send and receive (moving stock out of a closed warehouse is what a transfer is for)."""
        self._known(sku)
        check_stock_value("qty", qty, low=1, high=MAX_STOCK)
        self._table.location(source)
        self._table.location(destination)
        if source == destination:
            raise InvalidRequest("a transfer needs two different locations")
        _check_reason(reason)
        levels = await self._change_product(sku, Transfer(qty, source, destination, reason))
        self.counters["transfers"] += 1
        return levels  # type: ignore[no-any-return]

    # -- the sale's rules ---------------------------------------------------------------------

    async def set_rules(
        self,
        sku: str,
        *,
        per_order: int | None = None,
        per_customer: int | None = None,
        opens_at: datetime | None = None,
        closes_at: datetime | None = None,
        low_stock_at: int | None = None,
    ) -> ProductRules:
        """Replace the product's rules whole (an argument left out is no such rule; none at
        all removes every rule) and answer them as kept. Applied by the product's actor, in
        order with its orders: an order taken before it was decided under the old rules.

        ``per_order`` and ``per_customer`` are limits from 1 to MAX_QTY; ``opens_at`` /
        ``closes_at`` aware datetimes (``closes_at`` after ``opens_at``); ``low_stock_at`` an
        integer from 0. The ``per_customer`` counts restart from zero when its value changes
        (``counting_since`` says when); replacing the other rules keeps them. Raises
        UnknownProduct, InvalidRequest. Waits until the change is durable."""
        rules = check_rules(sku, per_order, per_customer, opens_at, closes_at, low_stock_at)
        self._known(sku)
        return await self._change_product(sku, SetRules(rules))  # type: ignore[no-any-return]

    async def rules(self, sku: str) -> ProductRules:
        """The product's rules (all None when it has none), ordered after every change
        already sent to it. Raises UnknownProduct."""
        self._known(sku)
        self._enter()
        try:
            await self._dispatcher.ask(sku, Read())  # after what is in its mailbox
        finally:
            self._leave()
        state = self._ledgers[sku].rules
        return ProductRules(sku=sku) if state is None else state.rules

    def on_sale(self, sku: str) -> bool:
        """Whether orders for the product are taken now (inside its window; True without
        one). Never blocks. Raises UnknownProduct."""
        self._known(sku)
        state = self._ledgers[sku].rules
        if state is None:
            return True
        now = self._clock()
        return (state.opens_s is None or now >= state.opens_s) and (
            state.closes_s is None or now < state.closes_s
        )

    async def _change_product(
        self, sku: str, command: SetStock | Adjust | Transfer | SetRules, create: bool = False
    ) -> Any:
        """A merchant change: the actor applies it and journals its event after an await, so a
        journal slot is held until then; the answer waits until it is durable. With ``create``
        a missing product is made, only once the journal has admitted the change."""
        self._enter()
        try:
            self._journal.claim_slot()
            try:
                if create and sku not in self._ledgers:
                    assert type(command) is SetStock
                    self._ledgers[sku] = ProductLedger.created_at(sku, command.location)
                reply, seq = await self._dispatcher.ask(sku, command)
            finally:
                self._journal.free_slot()
            if not self._journal.is_durable(seq):
                await self._journal.wait_durable(seq)
            return reply
        finally:
            self._leave()

    # -- locations and channels ---------------------------------------------------------------

    async def set_location(
        self, id: str, name: str = "", priority: int = 0, active: bool = True
    ) -> Location:
        """Create or replace a location. Deactivating one takes its units out of every
        product's ``available`` at once, in every channel (holds already there stay valid);
        reactivating puts them back. Allocation takes locations in ``(priority, id)`` order."""
        location: Location = await self._journal_change(
            lambda now: self._table.set_location(id, name, priority, active, now)
        )
        return location

    async def update_location(
        self,
        id: str,
        *,
        name: str | None = None,
        priority: int | None = None,
        active: bool | None = None,
    ) -> Location:
        """Change only the given fields of an existing location (the others stay as they
        are), decided in one step, so two partial changes never undo each other. Raises
        UnknownLocation (it creates nothing), InvalidRequest. Deactivating or reactivating
        does what :meth:`set_location` says."""
        location: Location = await self._journal_change(
            lambda now: self._table.update_location(id, name, priority, active, now)
        )
        return location

    def locations(self) -> list[Location]:
        """Every location, in allocation order (never blocks)."""
        table = self._table
        return [table.locations[i] for i in table.order()]

    async def set_channel(self, id: str, locations: Iterable[str]) -> Channel:
        """Create or replace a sales channel selling from ``locations`` (known locations, at
        least one). Raises UnknownLocation, InvalidRequest."""
        channel: Channel = await self._journal_change(
            lambda now: self._table.set_channel(id, locations, now)
        )
        return channel

    def channels(self) -> list[Channel]:
        """Every channel, by id (never blocks)."""
        return [self._table.channels[i] for i in sorted(self._table.channels)]

    def location_exists(self, location: str) -> bool:
        return type(location) is str and location in self._table.locations

    def channel_exists(self, channel: str) -> bool:
        """Whether a channel of that id was created (never blocks)."""
        return type(channel) is str and channel in self._table.channels

    async def _journal_change(self, change: Callable[[float], tuple[Any, Any, bool]]) -> Any:
        """Make a change to the location table, ``change(now) -> (value, event, created)``,
        only once the engine is open and the journal has room (so a refused call changes
        nothing), journal it, and wait until it is durable; return the value."""
        self._enter()
        try:
            self._journal.admit()
            value, event, _ = change(self._clock())
            if event is None:  # nothing changed: answer once what it shows is durable
                await self._settled()
                return value
            seq = self._journal.append((event,))
            if self._journal.is_durable(seq):
                await trio.lowlevel.checkpoint()
            else:
                await self._journal.wait_durable(seq)
            return value
        finally:
            self._leave()

    # -- reads --------------------------------------------------------------------------------

    async def stock(self, sku: str, channel: str | None = None) -> StockLevel:
        """The product's StockLevel (``channel``'s view: over its locations only), ordered after
        every change already sent to it."""
        self._known(sku)
        where = None if channel is None else self._table.where(channel, None)
        self._enter()
        try:
            return await self._dispatcher.ask(sku, Read(where))
        finally:
            self._leave()

    async def stock_by_location(self, sku: str) -> list[LocationLevel]:
        """The product's LocationLevel at each location holding its stock, in allocation
        order."""
        self._known(sku)
        self._enter()
        try:
            return await self._dispatcher.ask(sku, ReadLocations())
        finally:
            self._leave()

    def has_product(self, sku: str) -> bool:
        """Whether ``sku`` has been given stock (never blocks)."""
        return type(sku) is str and sku in self._ledgers

    def products(self, after: str | None = None, limit: int = 100) -> list[StockLevel]:
        """Up to ``limit`` products in sku order, starting after ``after``: a page of a listing.
        Read at one instant (no actor is asked), so changes still in mailboxes are not shown.
        Raises InvalidRequest for a limit that is not an integer from 1 to 1000, or an
        ``after`` that is not a string."""
        if type(limit) is not int or not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be an integer from 1 to 1000, not {limit!r}")
        if after is not None and type(after) is not str:
            raise InvalidRequest(f"after must be a sku or None, not {after!r}")
        if self._sorted_skus is None or len(self._sorted_skus) != len(self._ledgers):
            self._sorted_skus = sorted(self._ledgers)
        skus = self._sorted_skus
        start = 0 if after is None else bisect.bisect_right(skus, after)
        table = self._table
        return [self._ledgers[sku].level(table) for sku in skus[start : start + limit]]
