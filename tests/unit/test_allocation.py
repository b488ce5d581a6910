"""The allocation strategy and the cart-edit plan: pure functions."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.engine.allocation import add, allocate, shrink, subtract
from stockade.engine.cartplan import growth, settle

CANDIDATES = [("a", 2), ("b", 0), ("c", 5)]


def test_priority_fills_in_order_and_splits():
    assert allocate(1, CANDIDATES) == {"a": 1}
    assert allocate(4, CANDIDATES) == {"a": 2, "c": 2}
    assert allocate(7, CANDIDATES) == {"a": 2, "c": 5}
    assert allocate(8, CANDIDATES) is None


def test_most_available_starts_with_the_fullest_and_keeps_priority_on_ties():
    assert allocate(4, CANDIDATES, "most_available") == {"c": 4}
    assert allocate(6, CANDIDATES, "most_available") == {"c": 5, "a": 1}
    assert allocate(1, [("x", 3), ("y", 3)], "most_available") == {"x": 1}


def test_negative_availability_is_never_taken():
    assert allocate(1, [("a", -2), ("b", 1)]) == {"b": 1}


@given(
    qty=st.integers(1, 50),
    available=st.lists(st.integers(-3, 20), min_size=0, max_size=6),
    strategy=st.sampled_from(["priority", "most_available"]),
)
def test_an_allocation_covers_the_quantity_within_what_is_available(qty, available, strategy):
    candidates = [(f"l{i}", n) for i, n in enumerate(available)]
    allocation = allocate(qty, candidates, strategy)
    if allocation is None:
        assert sum(max(n, 0) for n in available) < qty
        return
    assert sum(allocation.values()) == qty
    for location, units in allocation.items():
        assert 0 < units <= dict(candidates)[location]


def test_add_subtract_and_shrink_never_mutate():
    a = {"x": 2, "y": 1}
    assert add(a, {"y": 1, "z": 3}) == {"x": 2, "y": 2, "z": 3}
    assert subtract(a, {"y": 1}) == {"x": 2}
    assert shrink(a, 2, {"x": 0, "y": 1}) == {"y": 1, "x": 1}  # the last in order first
    assert shrink(a, 1, {"y": 0}) == {"x": 1}  # a location no longer ranked goes first
    assert a == {"x": 2, "y": 1}
    with pytest.raises(ValueError):
        subtract(a, {"x": 3})
    with pytest.raises(ValueError):
        shrink(a, 4, {"x": 0, "y": 1})


def test_a_cart_edit_grows_shrinks_and_drops_lines():
    old_lines = {"a": 2, "b": 3, "c": 1}
    old = {"a": {"d": 2}, "b": {"d": 1, "n": 2}, "c": {"d": 1}}
    new_lines = {"a": 4, "b": 1, "e": 2}
    grow = growth(old_lines, new_lines)
    assert grow == {"a": 2, "e": 2}
    taken = {"a": {"n": 2}, "e": {"d": 2}}
    allocations, moves, releases = settle(old_lines, old, new_lines, taken, {"d": 0, "n": 1})
    assert allocations == {"a": {"d": 2, "n": 2}, "b": {"d": 1}, "e": {"d": 2}}
    assert moves == {"a": {"n": 2}, "b": {"n": -2}, "e": {"d": 2}, "c": {"d": -1}}
    assert releases == [("b", {"n": 2}), ("c", None)]
