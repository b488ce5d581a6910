"""Request bodies, validated once at the boundary with msgspec (one decoder per type)."""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec
from msgspec import Meta

from stockade.engine.validation import MAX_LINES, MAX_QTY, MAX_STOCK
from stockade.persistence.keys import MAX_NAME_CHARS, KeyRole

__all__ = ["Adjustment", "CreateKey", "Line", "PlaceOrder", "PutStock", "decoder"]

T = TypeVar("T")


class PutStock(msgspec.Struct, forbid_unknown_fields=True):
    on_hand: Annotated[int, Meta(ge=0, le=MAX_STOCK)]


class Adjustment(msgspec.Struct, forbid_unknown_fields=True):
    delta: Annotated[int, Meta(ge=-MAX_STOCK, le=MAX_STOCK)]
    reason: Annotated[str, Meta(max_length=1000)] = ""


class Line(msgspec.Struct, forbid_unknown_fields=True):
    sku: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    qty: Annotated[int, Meta(ge=1, le=MAX_QTY)]


class PlaceOrder(msgspec.Struct, forbid_unknown_fields=True):
    lines: Annotated[list[Line], Meta(min_length=1, max_length=MAX_LINES)]
    hold_seconds: Annotated[int, Meta(ge=1, le=86_400)] | None = None


class CreateKey(msgspec.Struct, forbid_unknown_fields=True):
    role: KeyRole
    name: Annotated[str, Meta(max_length=MAX_NAME_CHARS)] = ""


_DECODERS: dict[type, msgspec.json.Decoder] = {  # type: ignore[type-arg]
    kind: msgspec.json.Decoder(kind) for kind in (PutStock, Adjustment, PlaceOrder, CreateKey)
}


def decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    return _DECODERS[kind]
