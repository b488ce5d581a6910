"""Request bodies, validated once at the boundary with msgspec (one decoder per type).

Every limit here is the engine's own (stockade/engine/validation.py), so /openapi.json, which is
generated from these types, says exactly what the server enforces.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from stockade.engine.locations import DEFAULT_LOCATION, MAX_NAME_LENGTH, MAX_PRIORITY
from stockade.engine.validation import (
    DEFAULT_MAX_HOLD,
    MAX_CUSTOMER_LENGTH,
    MAX_LINES,
    MAX_METADATA_BYTES,
    MAX_METADATA_VALUES,
    MAX_QTY,
    MAX_REASON_LENGTH,
    MAX_REFERENCE_LENGTH,
    MAX_SKU_LENGTH,
    MAX_STOCK,
    SKU_PATTERN,
)
from stockade.outbound.signing import MAX_URL_LENGTH, SECRET_PATTERN, URL_PATTERN
from stockade.outbound.sinkurl import MAX_SINK_URL_LENGTH, SINK_URL_PATTERN
from stockade.outbound.webhooks import MAX_BATCH
from stockade.persistence.keys import MAX_NAME_CHARS, NAME_PATTERN, KeyRole

__all__ = [
    "MAX_CHANNEL_LOCATIONS",
    "Adjustment",
    "BodyDecoder",
    "ChangeOrder",
    "CreateKey",
    "EventType",
    "ExtendHold",
    "Line",
    "PatchLocation",
    "PlaceOrder",
    "PutChannel",
    "PutLocation",
    "PutSink",
    "PutRules",
    "PutStock",
    "PutWebhook",
    "TransferStock",
    "decoder",
]

T = TypeVar("T")

#: A sku in a body: the pattern means the same to msgspec (Python ``re``) and to JSON Schema.
Sku = Annotated[str, Meta(min_length=1, max_length=MAX_SKU_LENGTH, pattern=SKU_PATTERN)]
#: A location or channel id: the sku syntax (design.md §7).
LocationId = Sku
#: A hold in whole seconds: at least one, at most the engine's longest hold.
HoldSeconds = Annotated[int, Meta(ge=1, le=int(DEFAULT_MAX_HOLD.total_seconds()))]


class PutStock(msgspec.Struct, forbid_unknown_fields=True):
    on_hand: Annotated[int, Meta(ge=0, le=MAX_STOCK)]


class Adjustment(msgspec.Struct, forbid_unknown_fields=True):
    # The engine refuses a zero delta (it would move nothing); the schema says so.
    delta: Annotated[
        int, Meta(ge=-MAX_STOCK, le=MAX_STOCK, extra_json_schema={"not": {"const": 0}})
    ]
    reason: Annotated[str, Meta(max_length=MAX_REASON_LENGTH)] = ""
    location: LocationId = DEFAULT_LOCATION


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: Sku
    qty: Annotated[int, Meta(ge=1, le=MAX_QTY)]


#: An order's lines, at least one (to empty a cart, cancel it).
Lines = Annotated[
    list[Line],
    Meta(
        min_length=1,
        max_length=MAX_LINES,
        description="One line per sku: a sku named in two lines is refused (422).",
        extra_json_schema={"uniqueItems": True},
    ),
]


#: The shop's customer id (counted by ``per_customer`` rules).
Customer = Annotated[str, Meta(min_length=1, max_length=MAX_CUSTOMER_LENGTH)]
#: The shop's own order number.
Reference = Annotated[str, Meta(max_length=MAX_REFERENCE_LENGTH)]
#: A flat object of string values (the engine also refuses more than 4 KiB of it as JSON).
Metadata = Annotated[
    dict[str, str],
    Meta(
        max_length=MAX_METADATA_VALUES,
        description=f"a flat object of strings, at most {MAX_METADATA_BYTES} bytes as JSON "
        "(422 beyond)",
    ),
]


class PlaceOrder(msgspec.Struct, forbid_unknown_fields=True):
    """``location`` pins every line to that location (click and collect); ``channel`` sells
    from the channel's locations only (design.md §7). ``customer``, ``reference`` and
    ``metadata`` are the shop's own, kept on the order (design.md §13)."""

    lines: Lines
    hold_seconds: HoldSeconds | None = None
    location: LocationId | None = None
    channel: LocationId | None = None
    customer: Customer | None = None
    reference: Reference | None = None
    metadata: Metadata | None = None


#: A limit of a product's rules.
Limit = Annotated[int, Meta(ge=1, le=MAX_QTY)]
#: An RFC 3339 time with its offset (a time without one is refused, 422), from 1970 to 9999.
AwareTime = Annotated[
    datetime,
    Meta(tz=True, description="RFC 3339 with an offset, from 1970 to 9999 (UTC); 422 otherwise"),
]


class PutRules(msgspec.Struct, forbid_unknown_fields=True):
    """A product's rules, replacing the old ones whole: a rule left out (or null) is no such
    rule. Times are from 1970 to 9999 (UTC), and ``closes_at`` must be later than
    ``opens_at`` (422 otherwise)."""

    per_order: Limit | None = None
    per_customer: Limit | None = None
    opens_at: AwareTime | None = None
    closes_at: AwareTime | None = None
    low_stock_at: Annotated[int, Meta(ge=0, le=MAX_STOCK)] | None = None


class ChangeOrder(msgspec.Struct, forbid_unknown_fields=True):
    """A held order's new lines, replacing the old ones (design.md §8)."""

    lines: Lines


class ExtendHold(msgspec.Struct, forbid_unknown_fields=True):
    """Hold the order until ``hold_seconds`` from now (capped at its maximum lifetime)."""

    hold_seconds: HoldSeconds


class ConfirmOrder(msgspec.Struct, forbid_unknown_fields=True):
    """The optional body of a confirm: ``late`` confirms an expired hold if its units are
    available now (taken again, all or nothing), design.md §13. No body: ``late`` false."""

    late: bool = False


class ReturnUnits(msgspec.Struct, forbid_unknown_fields=True):
    """Units of a confirmed order coming back (design.md §13): restocked where they were sold
    from, or with ``restock`` false written off."""

    lines: Lines
    restock: bool = True


LocationName = Annotated[str, Meta(max_length=MAX_NAME_LENGTH)]
Priority = Annotated[int, Meta(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]


class PutLocation(msgspec.Struct, forbid_unknown_fields=True):
    """A whole location: every field is required, so a replacement never resets one that
    was left out (a partial change is ``PATCH``, :class:`PatchLocation`)."""

    name: LocationName
    priority: Priority
    active: bool


class PatchLocation(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; those left out stay as they are."""

    name: LocationName | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


#: The most locations a channel names over HTTP. The engine takes up to MAX_LOCATIONS, but a
#: body that long cannot fit in the default 64 KiB: this bound keeps every list the schema
#: allows, and the first one it refuses (401 ids of 128 characters: 53 KB), under the body
#: limit, so such a list is refused as invalid (422), never as too large (413).
MAX_CHANNEL_LOCATIONS = 400


class PutChannel(msgspec.Struct, forbid_unknown_fields=True):
    locations: Annotated[
        list[LocationId],
        Meta(
            min_length=1,
            max_length=MAX_CHANNEL_LOCATIONS,
            description="Known locations, each named once.",
            extra_json_schema={"uniqueItems": True},
        ),
    ]


class TransferStock(msgspec.Struct, forbid_unknown_fields=True):
    """Move ``qty`` units on hand of ``sku`` from ``source`` to ``destination``, two different
    locations (a transfer to the same location is refused, 422)."""

    sku: Sku
    qty: Annotated[int, Meta(ge=1, le=MAX_STOCK)]
    source: LocationId
    destination: LocationId
    reason: Annotated[str, Meta(max_length=MAX_REASON_LENGTH)] = ""


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    role: KeyRole
    name: Annotated[str, Meta(max_length=MAX_NAME_CHARS, pattern=NAME_PATTERN)] = ""


#: The change feed's event types (the engine's EVENT_TYPES; a test keeps them the same).
EventType = Literal[
    "stock.changed", "order.placed", "order.changed", "order.extended", "order.confirmed",
    "order.cancelled", "order.expired", "order.returned", "product.sold_out",
    "product.back_in_stock", "product.low_stock",
]  # fmt: skip

#: The event types a subscription wants: every type when left out or null.
_Types = (
    Annotated[
        list[EventType],
        Meta(min_length=1, description="every type when left out or null",
             extra_json_schema={"uniqueItems": True}),
    ]
    | None
)  # fmt: skip


class PutWebhook(msgspec.Struct, forbid_unknown_fields=True):
    """A webhook subscription (see :mod:`stockade.api.webhooks`)."""

    url: Annotated[str, Meta(max_length=MAX_URL_LENGTH, pattern=URL_PATTERN)]
    secret: Annotated[
        str,
        Meta(
            pattern=SECRET_PATTERN,
            description="whsec_ and the base64 of 24 to 64 random bytes (Standard Webhooks)",
        ),
    ]
    types: _Types = None
    batch: Annotated[
        int,
        Meta(ge=1, le=MAX_BATCH,
             description='the most events one POST carries; above 1: {"events": [...]}'),
    ] = 1  # fmt: skip


class PutSink(msgspec.Struct, forbid_unknown_fields=True):
    """A broker sink (see :mod:`stockade.outbound.sinkurl` for what ``url`` may say)."""

    url: Annotated[
        str,
        Meta(
            max_length=MAX_SINK_URL_LENGTH,
            description="nats://HOST:4222/SUBJECT, redis://HOST:6379/DB?stream=KEY or "
            "amqp://USER:PASS@HOST:5672/VHOST?exchange=NAME; the server checks the pattern "
            "itself, after checks that say what is wrong (422)",
            extra_json_schema={"pattern": SINK_URL_PATTERN},
        ),
    ]
    types: _Types = None


_untyped = msgspec.json.Decoder()


def _integral_floats_as_ints(value: Any) -> tuple[Any, bool]:
    """``value`` with each float that has no fraction (``5.0``) made an int, and whether any was."""
    if type(value) is float and value.is_integer():
        return int(value), True
    if type(value) is dict:
        changed = False
        out = {}
        for key, item in value.items():
            out[key], item_changed = _integral_floats_as_ints(item)
            changed |= item_changed
        return out, changed
    if type(value) is list:
        pairs = [_integral_floats_as_ints(item) for item in value]
        return [item for item, _ in pairs], any(changed for _, changed in pairs)
    return value, False


class BodyDecoder(Generic[T]):
    """Decodes and validates one body type; raises msgspec.DecodeError (ValidationError for a
    well-formed body that breaks the schema) with a message naming the field.

    JSON Schema's ``integer`` is a number with no fraction, so ``5.0`` is one: an integer field
    takes it as ``5``, and the document and the server agree. ``5.5`` and ``"5"`` are refused.
    A body is decoded once, typed; only a body that fails that is decoded again untyped, its
    integral floats made ints, and validated again.
    """

    def __init__(self, kind: type[T]) -> None:
        self.kind = kind
        self._typed = msgspec.json.Decoder(kind)

    def decode(self, data: bytes | str) -> T:
        try:
            return self._typed.decode(data)
        except msgspec.ValidationError:
            value, changed = _integral_floats_as_ints(_untyped.decode(data))
            if not changed:
                raise
            return msgspec.convert(value, self.kind)


_BODIES = (PutStock, Adjustment, PlaceOrder, CreateKey, ChangeOrder, ExtendHold, PutLocation,
           PatchLocation, PutChannel, TransferStock, PutWebhook, ConfirmOrder, ReturnUnits,
           PutRules, PutSink)  # fmt: skip
_DECODERS: dict[type, BodyDecoder[Any]] = {kind: BodyDecoder(kind) for kind in _BODIES}


def decoder(kind: type[T]) -> BodyDecoder[T]:
    return _DECODERS[kind]
