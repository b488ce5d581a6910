"""Errors travel as codes and come back as the same classes with the same attributes."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime

import msgspec
import pytest

import stockade
from stockade.errors import StockadeError
from stockade.protocol.codes import ERROR_CODES, INTERNAL, error_from_wire, error_to_wire

EXPORTED = sorted(
    (getattr(stockade, name) for name in stockade.__all__
     if isinstance(getattr(stockade, name), type)
     and issubclass(getattr(stockade, name), StockadeError)),
    key=lambda error: error.__name__,
)  # fmt: skip

SAMPLES: dict[str, object] = {
    "shortages": {"sku-1": (3, 1), "sku-2": (1, 0)},
    "first": 4,
    "last": 9,
    "why": "at its cap",
    "limits": {"sku-1": ("per_customer", 2, 2, 1), "sku-2": ("per_order", 3, 0, 4)},
    "opens_at": datetime(2030, 1, 1, 10, tzinfo=UTC),
    "closes_at": None,
    "limit": 10,
    "retry_after_s": 42.5,
}


def _sample(error: type[StockadeError]) -> StockadeError:
    """An instance made from the constructor's parameters, whatever they are."""
    arguments = {}
    try:
        parameters = inspect.signature(error).parameters.values()
    except ValueError:  # Exception's own constructor
        return error(f"a {error.__name__} for the test")
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            return error(f"a {error.__name__} for the test")
        arguments[parameter.name] = SAMPLES.get(parameter.name, f"{parameter.name}-value")
    return error(**arguments)


def _through_the_wire(error: BaseException) -> StockadeError:
    code, message, fields = error_to_wire(error)
    wire = msgspec.msgpack.encode([code, message, fields])
    code, message, fields = msgspec.msgpack.decode(wire)
    return error_from_wire(code, message, fields)


@pytest.mark.parametrize("error", EXPORTED, ids=lambda error: error.__name__)
def test_every_exported_error_round_trips(error: type[StockadeError]) -> None:
    assert error in {row.error for row in ERROR_CODES}, (
        f"{error.__name__} has no row in stockade/protocol/codes.py ERROR_CODES"
    )
    original = _sample(error)
    back = _through_the_wire(original)
    assert type(back) is error
    assert str(back) == str(original)
    assert vars(back) == vars(original)


def test_the_codes_are_unique() -> None:
    codes = [row.code for row in ERROR_CODES]
    assert len(set(codes)) == len(codes) and INTERNAL not in codes


def test_an_unknown_error_comes_back_as_a_plain_stockade_error() -> None:
    back = _through_the_wire(KeyError("boom"))
    assert type(back) is StockadeError and "KeyError: 'boom'" in str(back)
    assert INTERNAL in str(back)
    newer = error_from_wire("from_a_newer_engine", "something new", {})
    assert type(newer) is StockadeError and "something new" in str(newer)


def test_an_unlisted_subclass_travels_as_its_parent() -> None:
    class Special(stockade.Overloaded):
        pass

    assert type(_through_the_wire(Special("busy"))) is stockade.Overloaded


def test_fields_that_do_not_fit_still_give_the_class() -> None:
    back = error_from_wire("out_of_stock", "out of stock (garbled)", {"shortages": {"a": 1}})
    assert type(back) is stockade.OutOfStock and str(back) == "out of stock (garbled)"
