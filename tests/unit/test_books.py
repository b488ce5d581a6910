"""The books check's comparison (stockade/persistence/books.py), fed rows by hand: what balances,
and each kind of mismatch, named with its sku, location or order and both numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stockade import Order
from stockade.persistence.books import BooksCheck, Finding, OrderMove, Tally, check_order
from stockade.persistence.rows import order_from_row, order_row

T = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 1, 1, tzinfo=UTC)


def order(status: str, allocations: dict[str, dict[str, int]], held: bool = True) -> Order:
    lines = {sku: sum(per.values()) for sku, per in allocations.items()}
    return Order("o1", status, lines, T, LATER if held else None, None, allocations)  # type: ignore[arg-type]


SPLIT = {"a": {"default": 2, "north": 1}}
PLACED: list[OrderMove] = [("placed", "a", "default", 0, 2), ("placed", "a", "north", 0, 1)]
CONFIRMED: list[OrderMove] = [
    ("confirmed", "a", "default", -2, -2),
    ("confirmed", "a", "north", -1, -1),
]
RELEASED = [(kind, sku, loc, 0, -qty) for kind in ("cancelled",) for _, sku, loc, _, qty in PLACED]


@pytest.mark.parametrize(
    ("status", "moves", "held"),
    [
        ("reserved", PLACED, True),
        ("confirmed", PLACED + CONFIRMED, True),
        ("confirmed", [("placed", "a", "default", -2, 0), ("placed", "a", "north", -1, 0)], False),
        ("cancelled", PLACED + RELEASED, True),
        ("expired", PLACED + [("expired", s, loc, dh, dr) for _, s, loc, dh, dr in RELEASED], True),
        # a return: held, confirmed, then its units put back on hand
        ("cancelled", PLACED + CONFIRMED + [("cancelled", "a", "default", 2, 0),
                                            ("cancelled", "a", "north", 1, 0)], True),
        # a cart edit: placed 1 at default, changed by +1 at default and +1 at north
        ("reserved", [("placed", "a", "default", 0, 1), ("changed", "a", "default", 0, 1),
                      ("changed", "a", "north", 0, 1)], True),
    ],
)  # fmt: skip
def test_an_order_whose_movements_say_its_status_balances(status, moves, held):
    assert check_order(order(status, SPLIT, held), moves) == []


def test_a_confirmed_order_without_its_confirm_movement_is_named_with_both_numbers():
    found = check_order(order("confirmed", SPLIT), PLACED)
    by_field = {(f.location, f.field): (f.recorded, f.expected) for f in found if f.field}
    assert by_field == {
        ("default", "on_hand"): (0, -2), ("default", "reserved"): (2, 0),
        ("north", "on_hand"): (0, -1), ("north", "reserved"): (1, 0),
    }  # fmt: skip
    missing = [f.detail for f in found if f.field is None]
    assert missing == ["order o1 is confirmed but has no 'confirmed' movement"]
    first = found[0]
    assert first.kind == "order" and first.order_id == "o1" and first.sku == "a"
    assert first.detail == (
        "order o1 (confirmed), a at default: its movements move on_hand by 0, but a confirmed "
        "order allocated 2 there moves it by -2"
    )


def test_a_status_edited_by_hand_disagrees_with_the_movements():
    found = check_order(order("cancelled", SPLIT), PLACED)  # was reserved: no release moved
    assert [f.detail for f in found if f.field is None] == [
        "order o1 is cancelled but has no 'cancelled' movement"
    ]
    assert {(f.location, f.recorded, f.expected) for f in found if f.field == "reserved"} == {
        ("default", 2, 0),
        ("north", 1, 0),
    }
    stray = check_order(order("reserved", SPLIT), PLACED + CONFIRMED)
    assert "order o1 is reserved but has a 'confirmed' movement" in [f.detail for f in stray]


def test_an_order_that_contradicts_itself_is_named():
    bad = Order("o2", "reserved", {"a": 3}, T, None, None, {"a": {"default": 2}})
    details = [f.detail for f in check_order(bad, [("placed", "a", "default", 0, 2)])]
    assert "order o2 (reserved): its allocations of a add up to 2, its line says 3" in details
    assert "order o2 is reserved but has no deadline" in details
    odd = Order("o3", "lost", {"a": 1}, T)  # type: ignore[arg-type]
    assert [f.detail for f in check_order(odd, [])] == ["order o3 has an unknown status 'lost'"]


# -- the whole check ------------------------------------------------------------------------


def run(
    orders: list[tuple[Order, list[OrderMove]]],
    levels: list[Any],
    orphans: tuple[tuple[str, int], ...] = (),
) -> tuple[Tally, Any]:
    check = BooksCheck(order_from_row)
    tally = Tally()
    for placed, moves in orders:
        each: list[OrderMove | None] = [*moves] or [None]
        for move in each:
            tally.add(check.order_row(order_row(placed), move))
    tally.add(check.end_orders())
    for order_id, count in orphans:
        tally.add(check.orphan(order_id, count))
    for row in levels:
        tally.add(check.level_row(row))
    tally.add(check.end_levels())
    return tally, check.report(tally)


def test_books_that_balance_report_what_was_checked():
    held = order("reserved", SPLIT)
    sold = Order("o2", "confirmed", {"b": 1}, T, None, None, {"b": {"default": 1}})
    _, report = run(
        [(held, PLACED), (sold, [("placed", "b", "default", -1, 0)])],
        [("a", "default", True, 5, 2, 5, 2), ("a", "north", True, 1, 1, 1, 1),
         ("b", "default", True, 0, 0, 0, 0)],
    )  # fmt: skip
    assert report.balanced and report.mismatches == 0 and report.findings == []
    assert (report.products, report.levels, report.orders, report.open_holds) == (2, 3, 2, 1)


def test_a_hand_edited_on_hand_is_named_with_the_ledger_sum():
    _, report = run([], [("a", "default", True, 12, 0, 10, 0)])
    assert not report.balanced
    assert report.findings == [Finding(
        kind="ledger", sku="a", location="default", field="on_hand", recorded=12, expected=10,
        detail="a at default: on_hand is 12 in the stock table, but its movements add up to 10",
    )]  # fmt: skip


def test_reserved_units_no_hold_accounts_for_are_named():
    # the stock and its ledger agree on 3 reserved, but no open hold is left (a deleted order)
    _, report = run([], [("a", "default", True, 5, 3, 5, 3)], orphans=(("gone", 2),))
    kinds = {f.kind: f for f in report.findings}
    assert set(kinds) == {"holds", "orphan"}
    assert (kinds["holds"].recorded, kinds["holds"].expected) == (3, 0)
    assert "open holds (reserved orders) hold 0" in kinds["holds"].detail
    assert kinds["orphan"].detail.startswith("2 movement row(s) name order gone")


def test_holds_at_a_place_without_stock_or_movements_are_named():
    _, report = run([(order("reserved", SPLIT), PLACED)], [("a", "default", True, 2, 2, 2, 2)])
    (finding,) = report.findings
    assert (finding.kind, finding.location, finding.expected) == ("holds", "north", 1)


def test_a_missing_stock_row_counts_as_zero_and_bounds_are_checked():
    _, report = run([], [("a", "default", False, 0, 0, 4, 0), ("b", "default", True, 1, 2, 1, 2)])
    details = [f.detail for f in report.findings]
    assert details[0] == (
        "a at default: on_hand is 0 in the stock table (no row: 0), but its movements add up to 4"
    )
    assert any(f.kind == "bounds" and f.sku == "b" for f in report.findings)


def test_an_unreadable_order_is_a_finding_not_a_crash():
    check = BooksCheck(order_from_row)
    columns = ("o9", "reserved", "not json", 1.0, 2.0, None, None, None, None)
    (finding,) = check.order_row(columns, ("placed", "a", "default", 0, 1))
    assert (finding.kind, finding.order_id) == ("order", "o9")
    assert "cannot be read" in finding.detail
    assert check.end_orders() == [] and check.held == {}


def test_a_tally_counts_every_finding_and_keeps_the_first():
    seen: list[Finding] = []
    tally = Tally(keep=1, on_finding=seen.append)
    tally.add(check_order(order("confirmed", SPLIT), PLACED))
    assert tally.count == len(seen) == 5 and tally.kept == seen[:1]
