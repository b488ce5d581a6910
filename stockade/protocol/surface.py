"""The Engine's API as ``async`` methods that build a call and hand it to ``_call``.

:class:`AsyncEngineCalls` is written once, from the Structs of :mod:`stockade.protocol.calls`,
and shared by every async handle: the remote client (:class:`stockade.protocol.client.
RemoteEngine`) sends the call over a connection, the asyncio handle
(:class:`stockade.AsyncioEngine`) hands it to the engine thread, where
:func:`~stockade.protocol.dispatch.dispatch` runs it. Explicit thin methods rather than
generated ones: mypy, IDEs and ``help()`` see each real signature, and
``tests/unit/test_protocol_calls.py`` checks every one against :class:`stockade.Engine`'s.

Every method is ``async``, including those that never block on an Engine (``has_product``,
``locations``, ``statistics``, ``feed_head``...): over a connection or a thread they wait.
:class:`BlockingEngineCalls` is its blocking twin, for :class:`stockade.BlockingEngine`
(``feed_head`` stays a property there, as on the Engine).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.models import (
    Channel,
    EngineStatistics,
    Event,
    Location,
    LocationLevel,
    Movement,
    Order,
    OrderStatus,
    ProductRules,
    StockLevel,
)
from stockade.engine.validation import Lines
from stockade.protocol import calls as c

__all__ = ["AsyncEngineCalls", "BlockingEngineCalls"]

R = TypeVar("R")


class AsyncEngineCalls:
    """Same names, arguments, results and errors as :class:`stockade.Engine`, all awaitable.
    A subclass says how a call runs (:meth:`_call`)."""

    async def _call(self, call: c.CallBase[R]) -> R:
        raise NotImplementedError

    # -- stock --------------------------------------------------------------------------------

    async def set_stock(
        self, sku: str, on_hand: int, location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        return await self._call(c.SetStockCall(sku, on_hand, location))

    async def adjust_stock(
        self, sku: str, delta: int, reason: str = "", location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        return await self._call(c.AdjustStockCall(sku, delta, reason, location))

    async def transfer(
        self, sku: str, qty: int, source: str, destination: str, reason: str = ""
    ) -> list[LocationLevel]:
        return await self._call(c.TransferCall(sku, qty, source, destination, reason))

    async def stock(self, sku: str, channel: str | None = None) -> StockLevel:
        return await self._call(c.StockCall(sku, channel))

    async def stock_by_location(self, sku: str) -> list[LocationLevel]:
        return await self._call(c.StockByLocationCall(sku))

    async def has_product(self, sku: str) -> bool:
        return await self._call(c.HasProductCall(sku))

    async def products(self, after: str | None = None, limit: int = 100) -> list[StockLevel]:
        return await self._call(c.ProductsCall(after, limit))

    # -- orders -------------------------------------------------------------------------------

    async def place_order(
        self,
        lines: Lines,
        *,
        hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None,
        location: str | None = None,
        channel: str | None = None,
        customer: str | None = None,
        reference: str | None = None,
        metadata: Mapping[str, str] | None = None,
        holder: str | None = None,
        max_open_holds: int | None = None,
    ) -> Order:
        return await self._call(
            c.PlaceOrderCall(
                _any(lines),
                hold_for,
                idempotency_key,
                location,
                channel,
                customer,
                reference,
                _any(metadata),
                holder,
                max_open_holds,
            )
        )

    async def confirm(self, order_id: str, *, late: bool = False) -> Order:
        return await self._call(c.ConfirmCall(order_id, late))

    async def cancel(self, order_id: str, *, allow_return: bool = True) -> Order:
        return await self._call(c.CancelCall(order_id, allow_return))

    async def get_order(self, order_id: str) -> Order:
        return await self._call(c.GetOrderCall(order_id))

    async def change_order(
        self, order_id: str, lines: Lines, *, idempotency_key: str | None = None
    ) -> Order:
        return await self._call(c.ChangeOrderCall(order_id, _any(lines), idempotency_key))

    async def extend(
        self, order_id: str, hold_for: timedelta | float, *, idempotency_key: str | None = None
    ) -> Order:
        return await self._call(c.ExtendCall(order_id, hold_for, idempotency_key))

    async def return_units(
        self,
        order_id: str,
        lines: Lines,
        *,
        restock: bool = True,
        idempotency_key: str | None = None,
    ) -> Order:
        return await self._call(c.ReturnUnitsCall(order_id, _any(lines), restock, idempotency_key))

    # -- locations and channels ---------------------------------------------------------------

    async def set_location(
        self, id: str, name: str = "", priority: int = 0, active: bool = True
    ) -> Location:
        return await self._call(c.SetLocationCall(id, name, priority, active))

    async def update_location(
        self, id: str, *, name: str | None = None, priority: int | None = None,
        active: bool | None = None,
    ) -> Location:  # fmt: skip
        return await self._call(c.UpdateLocationCall(id, name, priority, active))

    async def locations(self) -> list[Location]:
        return await self._call(c.LocationsCall())

    async def location_exists(self, location: str) -> bool:
        return await self._call(c.LocationExistsCall(location))

    async def set_channel(self, id: str, locations: Iterable[str]) -> Channel:
        return await self._call(c.SetChannelCall(id, _any(locations)))

    async def channels(self) -> list[Channel]:
        return await self._call(c.ChannelsCall())

    async def channel_exists(self, channel: str) -> bool:
        return await self._call(c.ChannelExistsCall(channel))

    # -- history, the feed, statistics --------------------------------------------------------

    async def list_orders(
        self,
        status: OrderStatus | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
        customer: str | None = None,
    ) -> list[Order]:
        return await self._call(
            c.ListOrdersCall(status, created_after, created_before, after, limit, customer)
        )

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
        return await self._call(
            c.SetRulesCall(sku, per_order, per_customer, opens_at, closes_at, low_stock_at)
        )

    async def rules(self, sku: str) -> ProductRules:
        return await self._call(c.RulesCall(sku))

    async def on_sale(self, sku: str) -> bool:
        return await self._call(c.OnSaleCall(sku))

    async def movements(
        self, sku: str, after: int | None = None, limit: int = 100
    ) -> list[Movement]:
        return await self._call(c.MovementsCall(sku, after, limit))

    async def event_page(
        self, after: int = 0, limit: int = 100, types: Iterable[str] | None = None
    ) -> tuple[list[Event], int]:
        return await self._call(c.EventPageCall(after, limit, _any(types)))

    async def feed_head(self) -> int | None:
        return await self._call(c.FeedHeadCall())

    async def statistics(self) -> EngineStatistics:
        return await self._call(c.StatisticsCall())


class BlockingEngineCalls:
    """Same names, arguments, results and errors as :class:`stockade.Engine`, as calls that
    block the calling thread until answered. A subclass says how a call runs
    (:meth:`_call`)."""

    def _call(self, call: c.CallBase[R]) -> R:
        raise NotImplementedError

    # -- stock --------------------------------------------------------------------------------

    def set_stock(self, sku: str, on_hand: int, location: str = DEFAULT_LOCATION) -> StockLevel:
        return self._call(c.SetStockCall(sku, on_hand, location))

    def adjust_stock(
        self, sku: str, delta: int, reason: str = "", location: str = DEFAULT_LOCATION
    ) -> StockLevel:
        return self._call(c.AdjustStockCall(sku, delta, reason, location))

    def transfer(
        self, sku: str, qty: int, source: str, destination: str, reason: str = ""
    ) -> list[LocationLevel]:
        return self._call(c.TransferCall(sku, qty, source, destination, reason))

    def stock(self, sku: str, channel: str | None = None) -> StockLevel:
        return self._call(c.StockCall(sku, channel))

    def stock_by_location(self, sku: str) -> list[LocationLevel]:
        return self._call(c.StockByLocationCall(sku))

    def has_product(self, sku: str) -> bool:
        return self._call(c.HasProductCall(sku))

    def products(self, after: str | None = None, limit: int = 100) -> list[StockLevel]:
        return self._call(c.ProductsCall(after, limit))

    # -- orders -------------------------------------------------------------------------------

    def place_order(
        self,
        lines: Lines,
        *,
        hold_for: timedelta | float | None = None,
        idempotency_key: str | None = None,
        location: str | None = None,
        channel: str | None = None,
        customer: str | None = None,
        reference: str | None = None,
        metadata: Mapping[str, str] | None = None,
        holder: str | None = None,
        max_open_holds: int | None = None,
    ) -> Order:
        return self._call(
            c.PlaceOrderCall(
                _any(lines),
                hold_for,
                idempotency_key,
                location,
                channel,
                customer,
                reference,
                _any(metadata),
                holder,
                max_open_holds,
            )
        )

    def confirm(self, order_id: str, *, late: bool = False) -> Order:
        return self._call(c.ConfirmCall(order_id, late))

    def cancel(self, order_id: str, *, allow_return: bool = True) -> Order:
        return self._call(c.CancelCall(order_id, allow_return))

    def get_order(self, order_id: str) -> Order:
        return self._call(c.GetOrderCall(order_id))

    def change_order(
        self, order_id: str, lines: Lines, *, idempotency_key: str | None = None
    ) -> Order:
        return self._call(c.ChangeOrderCall(order_id, _any(lines), idempotency_key))

    def extend(
        self, order_id: str, hold_for: timedelta | float, *, idempotency_key: str | None = None
    ) -> Order:
        return self._call(c.ExtendCall(order_id, hold_for, idempotency_key))

    def return_units(
        self,
        order_id: str,
        lines: Lines,
        *,
        restock: bool = True,
        idempotency_key: str | None = None,
    ) -> Order:
        return self._call(c.ReturnUnitsCall(order_id, _any(lines), restock, idempotency_key))

    # -- locations and channels ---------------------------------------------------------------

    def set_location(
        self, id: str, name: str = "", priority: int = 0, active: bool = True
    ) -> Location:
        return self._call(c.SetLocationCall(id, name, priority, active))

    def update_location(
        self, id: str, *, name: str | None = None, priority: int | None = None,
        active: bool | None = None,
    ) -> Location:  # fmt: skip
        return self._call(c.UpdateLocationCall(id, name, priority, active))

    def locations(self) -> list[Location]:
        return self._call(c.LocationsCall())

    def location_exists(self, location: str) -> bool:
        return self._call(c.LocationExistsCall(location))

    def set_channel(self, id: str, locations: Iterable[str]) -> Channel:
        return self._call(c.SetChannelCall(id, _any(locations)))

    def channels(self) -> list[Channel]:
        return self._call(c.ChannelsCall())

    def channel_exists(self, channel: str) -> bool:
        return self._call(c.ChannelExistsCall(channel))

    # -- history, the feed, statistics --------------------------------------------------------

    def list_orders(
        self,
        status: OrderStatus | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
        customer: str | None = None,
    ) -> list[Order]:
        return self._call(
            c.ListOrdersCall(status, created_after, created_before, after, limit, customer)
        )

    def set_rules(
        self,
        sku: str,
        *,
        per_order: int | None = None,
        per_customer: int | None = None,
        opens_at: datetime | None = None,
        closes_at: datetime | None = None,
        low_stock_at: int | None = None,
    ) -> ProductRules:
        return self._call(
            c.SetRulesCall(sku, per_order, per_customer, opens_at, closes_at, low_stock_at)
        )

    def rules(self, sku: str) -> ProductRules:
        return self._call(c.RulesCall(sku))

    def on_sale(self, sku: str) -> bool:
        return self._call(c.OnSaleCall(sku))

    def movements(self, sku: str, after: int | None = None, limit: int = 100) -> list[Movement]:
        return self._call(c.MovementsCall(sku, after, limit))

    def event_page(
        self, after: int = 0, limit: int = 100, types: Iterable[str] | None = None
    ) -> tuple[list[Event], int]:
        return self._call(c.EventPageCall(after, limit, _any(types)))

    @property
    def feed_head(self) -> int | None:
        return self._call(c.FeedHeadCall())

    def statistics(self) -> EngineStatistics:
        return self._call(c.StatisticsCall())


def _any(value: object) -> Any:
    """An argument passed on as given: the engine checks it (the Struct's field type is what
    travels; a Mapping or iterable is encoded as a dict or list)."""
    return value
