"""Request bodies, validated once at the boundary with msgspec (one decoder per type).

Every limit here is the engine's own (stockade/engine/validation.py), so /openapi.json, which is
generated from these types, says exactly what the server enforces.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec
from msgspec import Meta

from stockade.engine.validation import (
    DEFAULT_MAX_HOLD,
    MAX_LINES,
    MAX_QTY,
    MAX_REASON_LENGTH,
    MAX_SKU_LENGTH,
    MAX_STOCK,
    SKU_PATTERN,
)

__all__ = ["Adjustment", "Line", "PlaceOrder", "PutStock", "decoder"]

T = TypeVar("T")

#: A sku in a body: the pattern means the same to msgspec (Python ``re``) and to JSON Schema.
Sku = Annotated[str, Meta(min_length=1, max_length=MAX_SKU_LENGTH, pattern=SKU_PATTERN)]


class PutStock(msgspec.Struct, forbid_unknown_fields=True):
    on_hand: Annotated[int, Meta(ge=0, le=MAX_STOCK)]


class Adjustment(msgspec.Struct, forbid_unknown_fields=True):
    # The engine refuses a zero delta (it would move nothing); the schema says so.
    delta: Annotated[
        int, Meta(ge=-MAX_STOCK, le=MAX_STOCK, extra_json_schema={"not": {"const": 0}})
    ]
    reason: Annotated[str, Meta(max_length=MAX_REASON_LENGTH)] = ""


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: Sku
    qty: Annotated[int, Meta(ge=1, le=MAX_QTY)]


class PlaceOrder(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[
        list[Line],
        Meta(
            min_length=1,
            max_length=MAX_LINES,
            description="One line per sku: a sku named in two lines is refused (422).",
            extra_json_schema={"uniqueItems": True},
        ),
    ]
    hold_seconds: Annotated[int, Meta(ge=1, le=int(DEFAULT_MAX_HOLD.total_seconds()))] | None = None


_DECODERS: dict[type, msgspec.json.Decoder] = {  # type: ignore[type-arg]
    kind: msgspec.json.Decoder(kind) for kind in (PutStock, Adjustment, PlaceOrder)
}


def decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    return _DECODERS[kind]
