"""Errors on the wire: each :class:`~stockade.StockadeError` subclass travels as a code, its
message and its fields, and comes back as the same class with the same attributes.

:data:`ERROR_CODES` is the one table: a row names the class and the attributes that travel
(they must be its constructor's parameters, by name, apart from the message). A new error
class needs one row; ``tests/unit/test_protocol_codes.py`` fails while a class exported from
``stockade`` has none. An error the table does not know (an unexpected exception on the
engine's side, or a code from a newer engine) comes back as a plain StockadeError naming it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

from stockade import errors as e

__all__ = ["ERROR_CODES", "INTERNAL", "ErrorCode", "error_from_wire", "error_to_wire"]

#: The code of an unexpected error on the engine's side (logged there with its traceback).
INTERNAL = "internal"


class ErrorCode(NamedTuple):
    """One row: the ``code`` on the wire, the ``error`` class, the attributes that travel,
    and how to rebuild it (default: the class called with the attributes as keywords, plus
    the message first when the constructor takes one)."""

    code: str
    error: type[e.StockadeError]
    fields: tuple[str, ...] = ()
    build: Callable[[str, dict[str, Any]], e.StockadeError] | None = None


def _out_of_stock(message: str, fields: dict[str, Any]) -> e.StockadeError:
    shortages = fields.get("shortages") or {}
    return e.OutOfStock({sku: (int(pair[0]), int(pair[1])) for sku, pair in shortages.items()})


def _limit_exceeded(message: str, fields: dict[str, Any]) -> e.StockadeError:
    limits = fields.get("limits") or {}
    return e.LimitExceeded({sku: (str(v[0]), int(v[1]), int(v[2]), int(v[3]))
                            for sku, v in limits.items()})  # fmt: skip


ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode("out_of_stock", e.OutOfStock, ("shortages",), _out_of_stock),
    ErrorCode("limit_exceeded", e.LimitExceeded, ("limits",), _limit_exceeded),
    ErrorCode("not_on_sale", e.NotOnSale, ("sku", "opens_at", "closes_at")),
    ErrorCode("unknown_product", e.UnknownProduct, ("sku",)),
    ErrorCode("unknown_location", e.UnknownLocation, ("location",)),
    ErrorCode("unknown_channel", e.UnknownChannel, ("channel",)),
    ErrorCode("order_not_found", e.OrderNotFound, ("order_id",)),
    ErrorCode("invalid_transition", e.InvalidTransition, ("order_id", "status", "action", "why")),
    ErrorCode("invalid_request", e.InvalidRequest),
    ErrorCode("stock_conflict", e.StockConflict),
    ErrorCode("return_conflict", e.ReturnConflict),
    ErrorCode("idempotency_conflict", e.IdempotencyConflict, ("key", "order_id")),
    ErrorCode("overloaded", e.Overloaded),
    ErrorCode("too_many_holds", e.TooManyHolds, ("limit", "retry_after_s")),
    ErrorCode("engine_closed", e.EngineClosed),
    ErrorCode("feed_gone", e.FeedGone, ("first", "last")),
    ErrorCode("engine_unavailable", e.EngineUnavailable),
    ErrorCode("engine_refused", e.EngineRefused),
    ErrorCode("store_error", e.StoreError),
    ErrorCode("error", e.StockadeError),
    ErrorCode("store_in_use", e.StoreInUse),
    ErrorCode("store_unavailable", e.StoreUnavailable),
    ErrorCode("store_lost", e.StoreLost),
    ErrorCode("corrupt_store", e.CorruptStore),
    ErrorCode("incompatible_store", e.IncompatibleStore),
)

_BY_CLASS = {row.error: row for row in ERROR_CODES}
_BY_CODE = {row.code: row for row in ERROR_CODES}


def error_to_wire(error: BaseException) -> tuple[str, str, dict[str, Any]]:
    """``(code, message, fields)`` for ``error``: its own row, else its nearest ancestor's
    in the table (a subclass the table does not know travels as its parent), else INTERNAL."""
    for klass in type(error).__mro__:
        row = _BY_CLASS.get(klass)
        if row is not None:
            fields = {name: getattr(error, name, None) for name in row.fields}
            return row.code, str(error), fields
    return INTERNAL, f"{type(error).__name__}: {error}", {}


def error_from_wire(code: str, message: str, fields: dict[str, Any]) -> e.StockadeError:
    """The error a reply carried, as the class of its code, with the message the engine gave.
    An unknown code (a newer engine) or INTERNAL: a plain StockadeError with that message."""
    row = _BY_CODE.get(code)
    if row is None:
        return e.StockadeError(f"engine error ({code}): {message}")
    try:
        if row.build is not None:
            error = row.build(message, fields)
        else:
            error = _build(row, message, fields)
    except (TypeError, ValueError, AttributeError, IndexError):  # fields that do not fit
        error = row.error.__new__(row.error)
        for name in row.fields:
            setattr(error, name, fields.get(name))
    error.args = (message,)
    return error


def _build(row: ErrorCode, message: str, fields: dict[str, Any]) -> e.StockadeError:
    kwargs = {name: fields.get(name) for name in row.fields}
    if _takes_message(row.code):  # it takes the message (``detail``...) besides the fields
        return row.error(message, **kwargs)
    return row.error(**kwargs)


@cache
def _takes_message(code: str) -> bool:
    """Whether the row's constructor takes a parameter besides its fields (the message)."""
    row = _BY_CODE[code]
    try:
        parameters = inspect.signature(row.error).parameters
    except ValueError:  # Exception's own constructor: it takes the message
        return True
    return any(name not in row.fields for name in parameters)
