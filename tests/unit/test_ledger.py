import pytest

from stockade import StockConflict, StockLevel
from stockade.engine.commands import (
    Adjust,
    Confirm,
    GiveBack,
    Read,
    Release,
    Return,
    SetStock,
    Take,
)
from stockade.engine.events import Adjusted, StockSet
from stockade.engine.ledger import ProductLedger


def test_take_sells_or_holds_and_refuses_with_what_is_available():
    ledger = ProductLedger("a", on_hand=5)
    assert ledger.apply(Take(order_id="o1", qty=2, hold=False), 0.0) is None
    assert ledger.apply(Take(order_id="o2", qty=2, hold=True), 0.0) is None
    assert (ledger.on_hand, ledger.reserved, ledger.holds) == (3, 2, {"o2": 2})
    assert ledger.apply(Take(order_id="o3", qty=2, hold=True), 0.0) == 1  # refused: 1 available
    assert (ledger.on_hand, ledger.reserved) == (3, 2)


def test_confirm_release_return_and_give_back():
    ledger = ProductLedger("a", on_hand=10)
    ledger.apply(Take(order_id="h1", qty=3, hold=True), 0.0)
    ledger.apply(Take(order_id="h2", qty=2, hold=True), 0.0)
    ledger.apply(Confirm("h1"), 0.0)
    assert (ledger.on_hand, ledger.reserved) == (7, 2)
    ledger.apply(Release("h2"), 0.0)
    assert (ledger.on_hand, ledger.reserved, ledger.holds) == (7, 0, None)
    ledger.apply(Return("h1", 3), 0.0)
    assert ledger.on_hand == 10
    ledger.apply(Take(order_id="s", qty=4, hold=False), 0.0)
    ledger.apply(GiveBack(order_id="s", qty=4, hold=False), 0.0)
    ledger.apply(Take(order_id="h3", qty=4, hold=True), 0.0)
    ledger.apply(GiveBack(order_id="h3", qty=4, hold=True), 0.0)
    assert ledger.apply(Read(), 0.0) == StockLevel("a", 10, 0, 10)


def test_releasing_a_hold_that_does_not_exist_is_a_bug():
    ledger = ProductLedger("a", on_hand=1)
    with pytest.raises(KeyError):
        ledger.apply(Release("nope"), 0.0)


def test_set_and_adjust_emit_events_with_deltas():
    ledger = ProductLedger("a")
    assert ledger.apply(SetStock(10), 5.0) == (
        StockLevel("a", 10, 0, 10),
        StockSet("a", 10, 10, 5.0),
    )
    assert ledger.apply(Adjust(-4, "damaged"), 6.0) == (
        StockLevel("a", 6, 0, 6),
        Adjusted("a", -4, "damaged", 6.0),
    )


@pytest.mark.parametrize("command", [SetStock(2), Adjust(-4, "count"), Adjust(-7, "")])
def test_merchant_changes_below_reserved_are_refused_and_change_nothing(command):
    ledger = ProductLedger("a", on_hand=6)
    ledger.apply(Take(order_id="h", qty=3, hold=True), 0.0)
    with pytest.raises(StockConflict):
        ledger.apply(command, 0.0)
    assert (ledger.on_hand, ledger.reserved, ledger.holds) == (6, 3, {"h": 3})


def test_unknown_command_is_a_type_error():
    with pytest.raises(TypeError):
        ProductLedger("a").apply("take", 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", [Take, GiveBack])
def test_the_hold_flag_is_always_named(command):
    with pytest.raises(TypeError):
        command("o1", 1, True)
    assert command(order_id="o1", qty=1, hold=True).hold is True
