import pytest

from stockade import InvalidRequest, LocationLevel, OutOfStock, StockConflict, StockLevel
from stockade.engine.changes import Adjusted, StockSet, Transferred
from stockade.engine.commands import (
    Adjust,
    Confirm,
    GiveBack,
    Read,
    ReadLocations,
    Release,
    Return,
    SetStock,
    Take,
    Transfer,
)
from stockade.engine.ledger import ProductLedger
from stockade.engine.locations import LocationTable

D = "default"


@pytest.fixture
def table() -> LocationTable:
    table = LocationTable()
    table.set_location("north", "North", 1, True, 0.0)
    table.set_location("south", "South", 2, True, 0.0)
    return table


def test_take_sells_or_holds_and_refuses_with_what_is_available(table):
    ledger = ProductLedger("a", on_hand=5)
    assert ledger.apply(Take(order_id="o1", qty=2, hold=False), 0.0, table) == {D: 2}
    assert ledger.apply(Take(order_id="o2", qty=2, hold=True), 0.0, table) == {D: 2}
    assert (ledger.on_hand, ledger.reserved, ledger.holds) == (3, 2, {"o2": {D: 2}})
    assert (
        ledger.apply(Take(order_id="o3", qty=2, hold=True), 0.0, table) == 1
    )  # refused: 1 available
    assert (ledger.on_hand, ledger.reserved) == (3, 2)
    assert ledger.sites is None  # a single-location product keeps no per-location table


def test_confirm_release_return_and_give_back(table):
    ledger = ProductLedger("a", on_hand=10)
    ledger.apply(Take(order_id="h1", qty=3, hold=True), 0.0, table)
    ledger.apply(Take(order_id="h2", qty=2, hold=True), 0.0, table)
    ledger.apply(Confirm("h1"), 0.0, table)
    assert (ledger.on_hand, ledger.reserved) == (7, 2)
    ledger.apply(Release("h2"), 0.0, table)
    assert (ledger.on_hand, ledger.reserved, ledger.holds) == (7, 0, None)
    ledger.apply(Return("h1", {D: 3}), 0.0, table)
    assert ledger.on_hand == 10
    taken = ledger.apply(Take(order_id="s", qty=4, hold=False), 0.0, table)
    ledger.apply(GiveBack(order_id="s", allocation=taken, hold=False), 0.0, table)  # type: ignore[arg-type]
    taken = ledger.apply(Take(order_id="h3", qty=4, hold=True), 0.0, table)
    ledger.apply(GiveBack(order_id="h3", allocation=taken, hold=True), 0.0, table)  # type: ignore[arg-type]
    assert ledger.apply(Read(), 0.0, table) == StockLevel("a", 10, 0, 10)
    assert ledger.holds is None


def test_releasing_a_hold_that_does_not_exist_is_a_bug(table):
    ledger = ProductLedger("a", on_hand=1)
    with pytest.raises(KeyError):
        ledger.apply(Release("nope"), 0.0, table)


def test_set_and_adjust_emit_events_with_deltas(table):
    ledger = ProductLedger("a")
    assert ledger.apply(SetStock(10), 5.0, table) == (
        StockLevel("a", 10, 0, 10),
        StockSet("a", D, 10, 10, 5.0),
    )
    assert ledger.apply(Adjust(-4, "damaged"), 6.0, table) == (
        StockLevel("a", 6, 0, 6),
        Adjusted("a", D, -4, "damaged", 6.0),
    )


@pytest.mark.parametrize("command", [SetStock(2), Adjust(-4, "count"), Adjust(-7, "")])
def test_merchant_changes_below_reserved_are_refused_and_change_nothing(command, table):
    ledger = ProductLedger("a", on_hand=6)
    ledger.apply(Take(order_id="h", qty=3, hold=True), 0.0, table)
    with pytest.raises(StockConflict):
        ledger.apply(command, 0.0, table)
    assert (ledger.on_hand, ledger.reserved, ledger.holds) == (6, 3, {"h": {D: 3}})


def test_unknown_command_is_a_type_error(table):
    with pytest.raises(TypeError):
        ProductLedger("a").apply("take", 0.0, table)  # type: ignore[arg-type]


# -- locations -----------------------------------------------------------------------------


def stocked(table: LocationTable, **sites: int) -> ProductLedger:
    ledger = ProductLedger("a")
    for location, on_hand in sites.items():
        ledger.apply(SetStock(on_hand, location), 0.0, table)
    return ledger


def test_an_order_is_split_across_locations_in_priority_order(table):
    ledger = stocked(table, default=2, north=3, south=10)
    assert ledger.apply(Take(order_id="o", qty=6, hold=True), 0.0, table) == {
        D: 2,
        "north": 3,
        "south": 1,
    }
    assert ledger.site("south") == (10, 1)
    assert ledger.level(table) == StockLevel("a", 15, 6, 9)


def test_most_available_takes_from_the_fullest_location_first():
    table = LocationTable("most_available")
    table.set_location("north", "", 1, True, 0.0)
    ledger = stocked(table, default=2, north=5)
    assert ledger.apply(Take(order_id="o", qty=6, hold=False), 0.0, table) == {"north": 5, D: 1}


def test_inactive_locations_are_not_offered_but_their_holds_stay(table):
    ledger = stocked(table, default=2, north=3)
    assert ledger.apply(Take(order_id="h", qty=3, hold=True), 0.0, table) == {D: 2, "north": 1}
    table.set_location("north", "North", 1, False, 1.0)
    assert ledger.level(table) == StockLevel("a", 5, 3, 0)
    assert ledger.apply(Take(order_id="o", qty=1, hold=False), 0.0, table) == 0
    levels = ledger.apply(ReadLocations(), 0.0, table)
    assert levels == [
        LocationLevel("a", D, 2, 2, 0, True),
        LocationLevel("a", "north", 3, 1, 0, False),
    ]
    ledger.apply(Confirm("h"), 0.0, table)  # the hold at the inactive location is still good
    assert ledger.level(table) == StockLevel("a", 2, 0, 0)
    table.set_location("north", "North", 1, True, 2.0)
    assert ledger.level(table) == StockLevel("a", 2, 0, 2)


def test_where_limits_an_order_to_some_locations(table):
    ledger = stocked(table, default=5, north=1, south=4)
    where = frozenset({"north", "south"})
    assert ledger.level(table, where) == StockLevel("a", 5, 0, 5)
    assert ledger.apply(Take(order_id="o", qty=6, hold=True, where=where), 0.0, table) == 5
    assert ledger.apply(Take(order_id="o", qty=3, hold=True, where=where), 0.0, table) == {
        "north": 1,
        "south": 2,
    }


def test_a_cart_take_adds_to_the_hold_and_a_part_can_be_released(table):
    ledger = stocked(table, default=1, north=5)
    ledger.apply(Take(order_id="c", qty=2, hold=True), 0.0, table)  # default 1, north 1
    assert ledger.apply(Take(order_id="c", qty=2, hold=True), 0.0, table) == {"north": 2}
    assert ledger.holds == {"c": {D: 1, "north": 3}}
    ledger.apply(Release("c", {"north": 2}), 0.0, table)
    assert ledger.holds == {"c": {D: 1, "north": 1}}
    assert (ledger.on_hand, ledger.reserved) == (6, 2)
    ledger.apply(Release("c"), 0.0, table)
    assert ledger.reserved == 0 and ledger.holds is None


def test_transfer_moves_units_and_refuses_more_than_available(table):
    ledger = stocked(table, default=5)
    ledger.apply(Take(order_id="h", qty=4, hold=True), 0.0, table)
    with pytest.raises(OutOfStock):
        ledger.apply(Transfer(2, D, "north", ""), 0.0, table)
    assert ledger.site(D) == (5, 4) and ledger.sites is None  # nothing changed
    levels, event = ledger.apply(Transfer(1, D, "north", "rebalance"), 3.0, table)  # type: ignore[misc]
    assert levels == [
        LocationLevel("a", D, 4, 4, 0, True),
        LocationLevel("a", "north", 1, 0, 1, True),
    ]
    assert event == Transferred("a", 1, D, "north", "rebalance", 3.0)
    assert (ledger.on_hand, ledger.reserved) == (5, 4)


def test_set_below_what_is_reserved_at_that_location_is_refused(table):
    ledger = stocked(table, default=1, north=3)
    ledger.apply(Take(order_id="h", qty=3, hold=True), 0.0, table)  # default 1, north 2
    with pytest.raises(InvalidRequest):
        ledger.apply(SetStock(1, "north"), 0.0, table)
    ledger.apply(SetStock(2, "north"), 0.0, table)
    assert ledger.site("north") == (2, 2)
