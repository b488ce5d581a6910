"""Checks of design.md §1's invariants, shared by the tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stockade import Order, StockLevel
from stockade.persistence.memory import StoreState


def assert_books_balance(
    levels: Mapping[str, StockLevel],
    orders: Iterable[Order],
    initial: Mapping[str, int] | None = None,
    adjustments: Mapping[str, int] | None = None,
) -> None:
    """Every product: 0 <= reserved <= on_hand; reserved == units of reserved orders; and, when
    ``initial`` (last set_stock) is given, on_hand == initial + adjustments - units sold."""
    held: dict[str, int] = {}
    sold: dict[str, int] = {}
    for order in orders:
        for sku, qty in order.lines.items():
            if order.status == "reserved":
                held[sku] = held.get(sku, 0) + qty
            elif order.status == "confirmed":
                sold[sku] = sold.get(sku, 0) + qty
    for sku, level in levels.items():
        assert 0 <= level.reserved <= level.on_hand, level
        assert level.available == level.on_hand - level.reserved, level
        assert level.reserved == held.get(sku, 0), (sku, level, held.get(sku, 0))
        if initial is not None:
            expected = initial[sku] + (adjustments or {}).get(sku, 0) - sold.get(sku, 0)
            assert level.on_hand == expected, (sku, level, expected)


def assert_store_matches(
    state: StoreState, levels: Mapping[str, StockLevel], orders: Iterable[Order]
) -> None:
    """The committed store says what the engine says: product values, order statuses, and the
    movements ledger adds up to the product values."""
    orders = list(orders)
    for sku, level in levels.items():
        assert state.products[sku] == (level.on_hand, level.reserved), sku
    assert {o.id: o.status for o in orders} == {o.id: o.status for o in state.orders.values()}
    if state.movements is not None:
        totals: dict[str, tuple[int, int]] = {}
        for m in state.movements:
            on_hand, reserved = totals.get(m.sku, (0, 0))
            totals[m.sku] = (on_hand + m.d_on_hand, reserved + m.d_reserved)
            assert totals[m.sku][0] >= 0 and totals[m.sku][1] >= 0
        assert totals == state.products
