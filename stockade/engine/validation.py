"""Input limits and the checks that enforce them, once, at the engine's boundary."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta

import msgspec

from stockade.errors import InvalidRequest

__all__ = [
    "DEFAULT_MAX_HOLD",
    "KEY_PATTERN",
    "MAX_CUSTOMER_LENGTH",
    "MAX_KEY_LENGTH",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_VALUES",
    "MAX_REFERENCE_LENGTH",
    "MAX_LINES",
    "MAX_REASON_LENGTH",
    "MAX_SKU_LENGTH",
    "Lines",
    "MAX_QTY",
    "MAX_STOCK",
    "SKU_PATTERN",
    "check_hold",
    "check_idempotency_key",
    "check_lines",
    "check_order_fields",
    "check_location_id",
    "check_sku",
    "check_stock_value",
]

#: An order's lines: ``{sku: qty}``, or ``(sku, qty)`` pairs (where a repeated sku is refused).
Lines = Mapping[str, int] | Sequence[tuple[str, int]]

MAX_LINES = 100
MAX_QTY = 1_000_000
#: Largest on-hand a product may have; keeps every value inside a 64-bit SQL integer with room.
MAX_STOCK = 10**12
MAX_SKU_LENGTH = 128
MAX_KEY_LENGTH = 255
MAX_REASON_LENGTH = 1000
MAX_CUSTOMER_LENGTH = 128
MAX_REFERENCE_LENGTH = 128
MAX_METADATA_VALUES = 50
#: The most bytes an order's metadata takes as compact JSON.
MAX_METADATA_BYTES = 4096
#: The longest hold an engine grants unless it is opened with another ``max_hold``.
DEFAULT_MAX_HOLD = timedelta(days=1)

# The patterns below are whole-value patterns that mean the same under Python's ``re`` (msgspec
# applies a pattern with ``re.search``) and ECMA-262 (JSON Schema): anchored at both ends, with
# ``(?!\n)`` before ``$`` because Python's ``$`` also matches before a final newline.
#: A sku: 1-128 characters of ``A-Z a-z 0-9 . _ : -``.
SKU_PATTERN = rf"^[A-Za-z0-9._:-]{{1,{MAX_SKU_LENGTH}}}(?!\n)$"
#: An idempotency key: 1-255 visible ASCII characters.
KEY_PATTERN = rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}(?!\n)$"

_SKU = re.compile(SKU_PATTERN)
_KEY = re.compile(KEY_PATTERN)


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass and is refused on purpose


def check_sku(sku: object) -> str:
    """Return ``sku`` if it is 1-128 chars of ``[A-Za-z0-9._:-]``, else raise InvalidRequest."""
    if type(sku) is not str or _SKU.fullmatch(sku) is None:
        raise InvalidRequest(
            f"invalid sku {sku!r}: use 1-{MAX_SKU_LENGTH} characters of A-Z a-z 0-9 . _ : -"
        )
    return sku


def check_location_id(value: object, *, what: str = "location id") -> str:
    """Return ``value`` if it is a valid location or channel id (the sku syntax), else raise
    InvalidRequest naming ``what``."""
    if type(value) is not str or _SKU.search(value) is None:
        raise InvalidRequest(
            f"invalid {what} {value!r}: use 1-{MAX_SKU_LENGTH} characters of A-Z a-z 0-9 . _ : -"
        )
    return value


def check_stock_value(name: str, value: object, *, low: int, high: int) -> int:
    """Return ``value`` if it is an int within ``[low, high]``, else raise InvalidRequest."""
    if not _is_int(value):
        raise InvalidRequest(f"{name} must be an integer, not {type(value).__name__}")
    assert isinstance(value, int)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, not {value}")
    return value


def check_lines(lines: object, known: Mapping[str, object]) -> dict[str, int]:
    """Validate an order's lines and return them as a new ``{sku: qty}`` dict in sku order.

    Accepts a mapping ``{sku: qty}`` or an iterable of ``(sku, qty)`` pairs (then a sku given
    twice is refused). ``known`` is the product table: a sku found there is already valid, which
    keeps the regular expression off the hot path.
    """
    if type(lines) is dict and len(lines) == 1:  # the hot path: one line of a known product
        ((sku, qty),) = lines.items()
        if type(sku) is str and sku in known and type(qty) is int and 1 <= qty <= MAX_QTY:
            return {sku: qty}
    if isinstance(lines, Mapping):
        pairs: Iterable[object] = lines.items()
        count = len(lines)
    elif isinstance(lines, list | tuple):
        pairs, count = lines, len(lines)
    else:
        raise InvalidRequest("lines must be a mapping of sku to quantity")
    if count == 0:
        raise InvalidRequest("an order needs at least one line")
    if count > MAX_LINES:
        raise InvalidRequest(f"an order may have at most {MAX_LINES} lines, not {count}")
    out: dict[str, int] = {}
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidRequest("each line must be a (sku, qty) pair")
        sku, qty = pair
        if not (type(sku) is str and sku in known):
            check_sku(sku)
        if not _is_int(qty) or not 1 <= qty <= MAX_QTY:
            raise InvalidRequest(f"quantity for {sku!r} must be an integer from 1 to {MAX_QTY}")
        if sku in out:
            raise InvalidRequest(f"sku {sku!r} appears in more than one line")
        out[sku] = qty
    if count > 1:
        out = dict(sorted(out.items()))
    return out


def check_hold(hold_for: object, max_hold_s: float) -> float | None:
    """Return the hold in seconds (``None`` for a direct purchase) or raise InvalidRequest."""
    if hold_for is None:
        return None
    if isinstance(hold_for, timedelta):
        seconds = hold_for.total_seconds()
    elif isinstance(hold_for, int | float) and not isinstance(hold_for, bool):
        seconds = float(hold_for)
    else:
        raise InvalidRequest("hold_for must be a timedelta, a number of seconds, or None")
    if not 0 < seconds <= max_hold_s:  # also refuses NaN
        raise InvalidRequest(f"hold_for must be more than 0 and at most {max_hold_s:g} seconds")
    return seconds


def check_idempotency_key(key: object) -> str | None:
    """Return the key (1-255 visible ASCII characters) or ``None``; raise InvalidRequest."""
    if key is None:
        return None
    if type(key) is not str or _KEY.fullmatch(key) is None:
        raise InvalidRequest(f"idempotency key must be 1-{MAX_KEY_LENGTH} visible ASCII characters")
    return key


def check_order_fields(
    customer: object, reference: object, metadata: object
) -> dict[str, str] | None:
    """Check an order's own fields: ``customer`` 1-128 characters, ``reference`` at most 128,
    ``metadata`` a flat ``{str: str}`` of at most 50 values and 4 KiB as JSON (each may be
    None). Return a copy of ``metadata``; raise InvalidRequest."""
    if customer is not None and (
        type(customer) is not str or not 1 <= len(customer) <= MAX_CUSTOMER_LENGTH
    ):
        raise InvalidRequest(f"customer must be a string of 1 to {MAX_CUSTOMER_LENGTH} characters")
    if reference is not None and (
        type(reference) is not str or len(reference) > MAX_REFERENCE_LENGTH
    ):
        raise InvalidRequest(
            f"reference must be a string of at most {MAX_REFERENCE_LENGTH} characters"
        )
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or len(metadata) > MAX_METADATA_VALUES:
        raise InvalidRequest(f"metadata must be an object of at most {MAX_METADATA_VALUES} values")
    copy: dict[str, str] = {}
    for name, value in metadata.items():
        if type(name) is not str or type(value) is not str:
            raise InvalidRequest("metadata must map strings to strings (a flat object)")
        copy[name] = value
    if len(msgspec.json.encode(copy)) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"metadata must take at most {MAX_METADATA_BYTES} bytes as JSON")
    return copy
