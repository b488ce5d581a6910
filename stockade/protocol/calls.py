"""The engine's API as data: one msgspec Struct per call, and the one table of calls.

Each call is a tagged Struct (the tag is the :class:`~stockade.Engine` method's name) whose
fields are that method's parameters, in order, with the same defaults; its generic parameter
is what the call returns (for a stream, what each item is). :data:`ENGINE_CALLS` maps each
Struct to its :class:`CallSpec`; :func:`stockade.protocol.dispatch.dispatch` runs one on an
engine, the remote client encodes it, the thread and asyncio handles hand it to the engine
thread.

Adding a call is a Struct here plus one entry in :data:`ENGINE_CALLS`; the drift test in
``tests/unit/test_protocol_calls.py`` fails while a public Engine method has no call or its
parameters differ. Calls that are not Engine methods (the engine process's key table,
webhooks...) are Structs of :class:`CallBase` too, served by handlers given to the server.
"""

from __future__ import annotations

import typing
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import msgspec

from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.models import (
    Channel,
    EngineStatistics,
    Event,
    Location,
    LocationLevel,
    Movement,
    Order,
    ProductRules,
    StockLevel,
)

__all__ = [
    "ENGINE_CALLS",
    "AdjustStockCall",
    "CallBase",
    "CallSpec",
    "CancelCall",
    "ChangeOrderCall",
    "ChannelExistsCall",
    "ChannelsCall",
    "ConfirmCall",
    "EventPageCall",
    "EventsCall",
    "ExtendCall",
    "FeedHeadCall",
    "GetOrderCall",
    "HasProductCall",
    "LinesField",
    "ListOrdersCall",
    "LocationExistsCall",
    "LocationsCall",
    "Mode",
    "MovementsCall",
    "OnSaleCall",
    "PlaceOrderCall",
    "ProductsCall",
    "ReturnUnitsCall",
    "RulesCall",
    "SetChannelCall",
    "UpdateLocationCall",
    "SetLocationCall",
    "SetRulesCall",
    "SetStockCall",
    "StatisticsCall",
    "StockByLocationCall",
    "StockCall",
    "TransferCall",
    "TypesField",
    "spec_of",
]

_R = TypeVar("_R")

#: Order lines as they travel: a mapping, or a sequence of ``(sku, qty)`` pairs.
LinesField = dict[str, int] | list[tuple[str, int]]
#: Event types: a list, one type, or None for all.
TypesField = list[str] | str | None


class CallBase(msgspec.Struct, Generic[_R], tag=True, array_like=True):
    """A call; ``R`` is its result (for a stream, one item). Fields are not checked when a
    Struct is made: the engine checks them, as it checks its own method's arguments, and over
    the protocol the server's decoder checks their types first."""


# -- stock ------------------------------------------------------------------------------------


class SetStockCall(CallBase[StockLevel], tag="set_stock"):
    sku: str
    on_hand: int
    location: str = DEFAULT_LOCATION


class AdjustStockCall(CallBase[StockLevel], tag="adjust_stock"):
    sku: str
    delta: int
    reason: str = ""
    location: str = DEFAULT_LOCATION


class TransferCall(CallBase[list[LocationLevel]], tag="transfer"):
    sku: str
    qty: int
    source: str
    destination: str
    reason: str = ""


class StockCall(CallBase[StockLevel], tag="stock"):
    sku: str
    channel: str | None = None


class StockByLocationCall(CallBase[list[LocationLevel]], tag="stock_by_location"):
    sku: str


class HasProductCall(CallBase[bool], tag="has_product"):
    sku: str


class ProductsCall(CallBase[list[StockLevel]], tag="products"):
    after: str | None = None
    limit: int = 100


# -- orders -----------------------------------------------------------------------------------


class PlaceOrderCall(CallBase[Order], tag="place_order"):
    lines: LinesField
    hold_for: timedelta | float | None = None
    idempotency_key: str | None = None
    location: str | None = None
    channel: str | None = None
    customer: str | None = None
    reference: str | None = None
    metadata: dict[str, str] | None = None
    holder: str | None = None
    max_open_holds: int | None = None


class ConfirmCall(CallBase[Order], tag="confirm"):
    order_id: str
    late: bool = False


class CancelCall(CallBase[Order], tag="cancel"):
    order_id: str
    allow_return: bool = True


class GetOrderCall(CallBase[Order], tag="get_order"):
    order_id: str


class ChangeOrderCall(CallBase[Order], tag="change_order"):
    order_id: str
    lines: LinesField
    idempotency_key: str | None = None


class ReturnUnitsCall(CallBase[Order], tag="return_units"):
    order_id: str
    lines: LinesField
    restock: bool = True
    idempotency_key: str | None = None


class ExtendCall(CallBase[Order], tag="extend"):
    order_id: str
    hold_for: timedelta | float
    idempotency_key: str | None = None


# -- locations and channels -------------------------------------------------------------------


class SetLocationCall(CallBase[Location], tag="set_location"):
    id: str
    name: str = ""
    priority: int = 0
    active: bool = True


class UpdateLocationCall(CallBase[Location], tag="update_location"):
    id: str
    name: str | None = None
    priority: int | None = None
    active: bool | None = None


class LocationsCall(CallBase[list[Location]], tag="locations"):
    pass


class LocationExistsCall(CallBase[bool], tag="location_exists"):
    location: str


class SetChannelCall(CallBase[Channel], tag="set_channel"):
    id: str
    locations: list[str]


class ChannelsCall(CallBase[list[Channel]], tag="channels"):
    pass


class ChannelExistsCall(CallBase[bool], tag="channel_exists"):
    channel: str


# -- history, the feed, statistics ------------------------------------------------------------


class ListOrdersCall(CallBase[list[Order]], tag="list_orders"):
    status: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    after: str | None = None
    limit: int = 100
    customer: str | None = None


# -- the sale's rules -------------------------------------------------------------------------


class SetRulesCall(CallBase[ProductRules], tag="set_rules"):
    sku: str
    per_order: int | None = None
    per_customer: int | None = None
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    low_stock_at: int | None = None


class RulesCall(CallBase[ProductRules], tag="rules"):
    sku: str


class OnSaleCall(CallBase[bool], tag="on_sale"):
    sku: str


class MovementsCall(CallBase[list[Movement]], tag="movements"):
    sku: str
    after: int | None = None
    limit: int = 100


class EventPageCall(CallBase[tuple[list[Event], int]], tag="event_page"):
    after: int = 0
    limit: int = 100
    types: TypesField = None


class EventsCall(CallBase[Event], tag="events"):
    """A subscription: many Event items for one call, until the caller stops reading."""

    after: int = 0
    types: TypesField = None


class FeedHeadCall(CallBase[int | None], tag="feed_head"):
    pass


class StatisticsCall(CallBase[EngineStatistics], tag="statistics"):
    pass


# -- the table --------------------------------------------------------------------------------

#: How a call runs on an Engine: a coroutine method (``await``), a plain method (``sync``), a
#: property (``property``), a method returning an async iterator (``stream``); ``handler``: not
#: an Engine method, served by a handler given to the server.
Mode = Literal["await", "sync", "property", "stream", "handler"]


class CallSpec(NamedTuple):
    """One row of the table: the call's ``name`` (its tag, the Engine method's name), its
    ``struct``, its field names, the ``result`` type replies are decoded as (a stream's item
    type), and its ``mode``."""

    name: str
    struct: type[CallBase[Any]]
    fields: tuple[str, ...]
    result: Any
    mode: Mode


def spec_of(struct: type[CallBase[Any]], mode: Mode) -> CallSpec:
    """The table row of ``struct``: name from its tag, result type from its generic base."""
    info = msgspec.structs.fields(struct)
    result = _result_type(struct)
    name = struct.__struct_config__.tag
    assert isinstance(name, str), f"{struct.__name__} needs a string tag"
    return CallSpec(name, struct, tuple(f.name for f in info), result, mode)


def _result_type(struct: type) -> Any:
    for klass in struct.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is CallBase:
                return typing.get_args(base)[0]
    raise TypeError(f"{struct.__name__} must subclass CallBase[Result]")


#: Every Engine call, in the order of the API's sections.
ENGINE_CALLS: dict[type[CallBase[Any]], CallSpec] = {
    spec.struct: spec
    for spec in (
        spec_of(SetStockCall, "await"),
        spec_of(AdjustStockCall, "await"),
        spec_of(TransferCall, "await"),
        spec_of(StockCall, "await"),
        spec_of(StockByLocationCall, "await"),
        spec_of(HasProductCall, "sync"),
        spec_of(ProductsCall, "sync"),
        spec_of(PlaceOrderCall, "await"),
        spec_of(ConfirmCall, "await"),
        spec_of(CancelCall, "await"),
        spec_of(GetOrderCall, "await"),
        spec_of(ChangeOrderCall, "await"),
        spec_of(ExtendCall, "await"),
        spec_of(ReturnUnitsCall, "await"),
        spec_of(SetLocationCall, "await"),
        spec_of(UpdateLocationCall, "await"),
        spec_of(LocationsCall, "sync"),
        spec_of(LocationExistsCall, "sync"),
        spec_of(SetChannelCall, "await"),
        spec_of(ChannelsCall, "sync"),
        spec_of(ChannelExistsCall, "sync"),
        spec_of(SetRulesCall, "await"),
        spec_of(RulesCall, "await"),
        spec_of(OnSaleCall, "sync"),
        spec_of(ListOrdersCall, "await"),
        spec_of(MovementsCall, "await"),
        spec_of(EventPageCall, "await"),
        spec_of(EventsCall, "stream"),
        spec_of(FeedHeadCall, "property"),
        spec_of(StatisticsCall, "sync"),
    )
}
