"""Checks of design.md §1's invariants, shared by the tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stockade import Engine, LocationLevel, Movement, Order, StockLevel
from stockade.engine.allocation import returned_parts
from stockade.persistence.memory import StoreState


def kept(order: Order) -> dict[str, dict[str, int]]:
    """Where a confirmed or cancelled order's sold units are not back on hand, ``{sku:
    {location: units}}``: its allocation less the units restocked (a cancelled order that had
    none returned sold nothing, or got everything back before returns were counted)."""
    if order.status == "cancelled" and not order.returned:
        return {}
    out: dict[str, dict[str, int]] = {}
    for sku, allocation in order.allocations.items():
        lost = order.written_off.get(sku, 0)
        back, _ = returned_parts(allocation, order.returned.get(sku, 0) - lost, lost)
        left = {loc: qty - back.get(loc, 0) for loc, qty in allocation.items()}
        out[sku] = {loc: qty for loc, qty in left.items() if qty}
    return out


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
        if order.status in ("confirmed", "cancelled"):
            for sku, per in kept(order).items():
                sold[sku] = sold.get(sku, 0) + sum(per.values())
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


def assert_location_books_balance(
    levels: Mapping[str, Iterable[LocationLevel]],
    orders: Iterable[Order],
    merchant_net: Mapping[tuple[str, str], int] | None = None,
    movements: Iterable[Movement] | None = None,
    totals: Mapping[str, StockLevel] | None = None,
    stored: Mapping[tuple[str, str], tuple[int, int]] | None = None,
) -> None:
    """design.md §7's invariants, location by location. ``levels`` is each product's
    ``stock_by_location``; ``orders`` every order that may hold or have sold its units.

    * every (sku, location): ``0 <= reserved <= on_hand``, ``available`` is ``on_hand -
      reserved`` while the location is active and 0 while it is not;
    * every order's allocations add up to its lines, with positive parts only;
    * ``reserved`` at each (sku, location) is what the reserved orders' allocations hold there;
    * with ``merchant_net`` (what set_stock, adjust_stock and transfers put at each (sku,
      location), net): ``on_hand == merchant_net - units the confirmed orders took there``;
    * with ``movements`` (the whole ledger): they add up to each (sku, location)'s values;
    * with ``totals`` (each product's StockLevel): the sums over locations, ``available`` over
      the active ones;
    * with ``stored`` (a store's stock rows, ``StoreState.stock``): the same values.
    """
    held: dict[tuple[str, str], int] = {}
    sold: dict[tuple[str, str], int] = {}
    for order in orders:
        assert set(order.allocations) == set(order.lines), order
        for sku, allocation in order.allocations.items():
            assert all(qty > 0 for qty in allocation.values()), order
            assert sum(allocation.values()) == order.lines[sku], order
            if order.status == "reserved":
                for location, qty in allocation.items():
                    held[sku, location] = held.get((sku, location), 0) + qty
        if order.status in ("confirmed", "cancelled"):
            for sku, per in kept(order).items():
                for location, qty in per.items():
                    sold[sku, location] = sold.get((sku, location), 0) + qty
    seen: dict[tuple[str, str], LocationLevel] = {}
    for sku, per_location in levels.items():
        for level in per_location:
            assert level.sku == sku, level
            assert (sku, level.location) not in seen, level
            seen[sku, level.location] = level
            assert 0 <= level.reserved <= level.on_hand, level
            free = level.on_hand - level.reserved
            assert level.available == (free if level.active else 0), level
    for (sku, location), qty in held.items():
        if sku in levels:
            found = seen.get((sku, location))
            assert found is not None and found.reserved == qty, (sku, location, qty, found)
    for (sku, location), level in seen.items():
        assert level.reserved == held.get((sku, location), 0), (level, held.get((sku, location)))
        if merchant_net is not None:
            expected = merchant_net.get((sku, location), 0) - sold.get((sku, location), 0)
            assert level.on_hand == expected, (level, expected)
    if merchant_net is not None:
        for (sku, location), net in merchant_net.items():
            if (sku, location) not in seen and sku in levels:
                assert net - sold.get((sku, location), 0) == 0, (sku, location, net)
    if movements is not None:
        ledger: dict[tuple[str, str], tuple[int, int]] = {}
        for m in movements:
            on_hand, reserved = ledger.get((m.sku, m.location), (0, 0))
            ledger[m.sku, m.location] = (on_hand + m.d_on_hand, reserved + m.d_reserved)
        _assert_same_values(seen, set(levels), ledger)
    if totals is not None:
        for sku, total in totals.items():
            mine = [level for (s, _), level in seen.items() if s == sku]
            assert total.on_hand == sum(level.on_hand for level in mine), total
            assert total.reserved == sum(level.reserved for level in mine), total
            assert total.available == sum(level.available for level in mine), total
    if stored is not None:
        _assert_same_values(seen, set(levels), stored)


def _assert_same_values(
    seen: Mapping[tuple[str, str], LocationLevel],
    skus: set[str],
    values: Mapping[tuple[str, str], tuple[int, int]],
) -> None:
    """``values`` (``(on_hand, reserved)`` by (sku, location)) say what the levels say, and
    are zero wherever no level is listed (for the products in ``skus``)."""
    for site, level in seen.items():
        assert values.get(site, (0, 0)) == (level.on_hand, level.reserved), (
            level,
            values.get(site),
        )
    for (sku, location), found in values.items():
        if sku in skus and (sku, location) not in seen:
            assert found == (0, 0), (sku, location, found)


def assert_holds_match_orders(engine: Engine) -> None:
    """No order holds units it does not list: every product's holds are exactly the
    allocations of the reserved orders, checked between moves (no mail waiting in any
    mailbox). Orders not yet in the book (a placement in flight) and orders with a move in
    progress (a cart edit takes before it records) are left out."""
    assert engine.statistics().queued_messages == 0
    busy = engine._busy
    orders = engine._book.orders
    for sku, ledger in engine._ledgers.items():
        for order_id, allocation in (ledger.holds or {}).items():
            order = orders.get(order_id)
            if order is None or order_id in busy:
                continue
            assert order.status == "reserved", (sku, order)
            assert order.allocations.get(sku) == allocation, (sku, order, allocation)
    for order_id, order in orders.items():
        if order.status != "reserved" or order_id in busy:
            continue
        for sku, allocation in order.allocations.items():
            holds = engine._ledgers[sku].holds or {}
            assert holds.get(order_id) == allocation, (sku, order, holds.get(order_id))


def assert_orders_match_movements(orders: Iterable[Order], movements: Iterable[Movement]) -> None:
    """Each order's rows in the movements ledger add up to what it holds or sold, location by
    location: a reserved order's ``d_reserved`` is its allocation (``d_on_hand`` 0), a
    confirmed order's ``d_on_hand`` is minus its allocation less what was restocked
    (``d_reserved`` 0), a cancelled order's rows net to minus what was written off, an expired
    order's to nothing. So no order holds units it does not list, and no
    change of an order (a cart edit above all) was recorded in part. ``orders`` must be every
    order the ledger names."""
    moved: dict[str, dict[tuple[str, str], tuple[int, int]]] = {}
    for m in movements:
        if m.order_id is not None:
            per_order = moved.setdefault(m.order_id, {})
            on_hand, reserved = per_order.get((m.sku, m.location), (0, 0))
            per_order[m.sku, m.location] = (on_hand + m.d_on_hand, reserved + m.d_reserved)
    for order in orders:
        expected: dict[tuple[str, str], tuple[int, int]] = {}
        if order.status == "reserved":
            for sku, allocation in order.allocations.items():
                for location, qty in allocation.items():
                    expected[sku, location] = (0, qty)
        elif order.status in ("confirmed", "cancelled"):
            for sku, per in kept(order).items():
                for location, qty in per.items():
                    expected[sku, location] = (-qty, 0)
        found = {site: net for site, net in moved.pop(order.id, {}).items() if net != (0, 0)}
        assert found == expected, (order, found)
    assert not moved, f"movements of orders not listed: {sorted(moved)[:5]}"
