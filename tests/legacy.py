"""Databases as an earlier stockade wrote them (schema version 1: one stock number per product,
no keys, no locations), to test that the migrations keep every order."""

from __future__ import annotations

import time

from stockade import Order
from stockade.engine.locations import DEFAULT_LOCATION
from stockade.engine.orders import from_timestamp
from stockade.persistence.schema import MIGRATIONS, STATE_TABLE


#: What a version-1 database holds after: stock a = 10; a hold of 1 (key cart-1), a sale of
#: 2, a hold of 3 cancelled. (on_hand 8, reserved 1.)
def version_1_statements(now: float | None = None) -> tuple[list[str], list[Order]]:
    """The SQL that builds a version-1 database (both dialects) and the orders it holds."""
    t = time.time() if now is None else now
    held = Order("held0000000000000000000000000001", "reserved", {"a": 1}, from_timestamp(t),
                 from_timestamp(t + 3600), "cart-1", {"a": {DEFAULT_LOCATION: 1}})  # fmt: skip
    sold = Order("sold0000000000000000000000000002", "confirmed", {"a": 2}, from_timestamp(t),
                 None, None, {"a": {DEFAULT_LOCATION: 2}})  # fmt: skip
    dropped = Order("drop0000000000000000000000000003", "cancelled", {"a": 3}, from_timestamp(t),
                    from_timestamp(t + 3600), None, {"a": {DEFAULT_LOCATION: 3}})  # fmt: skip
    statements = [
        STATE_TABLE,
        *MIGRATIONS[0],
        "INSERT INTO stockade_state VALUES (1, 1, 6, 0)",
        "INSERT INTO products VALUES ('a', 8, 1)",
        f"INSERT INTO orders VALUES ('{held.id}', 'reserved', '{{\"a\":1}}', {t}, {t + 3600}, "
        "'cart-1')",
        f"INSERT INTO orders VALUES ('{sold.id}', 'confirmed', '{{\"a\":2}}', {t}, NULL, NULL)",
        f"INSERT INTO orders VALUES ('{dropped.id}', 'cancelled', '{{\"a\":3}}', {t}, "
        f"{t + 3600}, NULL)",
        f"INSERT INTO movements VALUES (1, 'a', NULL, 'set', 10, 0, NULL, {t})",
        f"INSERT INTO movements VALUES (2, 'a', '{held.id}', 'placed', 0, 1, NULL, {t})",
        f"INSERT INTO movements VALUES (3, 'a', '{sold.id}', 'placed', -2, 0, NULL, {t})",
        f"INSERT INTO movements VALUES (4, 'a', '{dropped.id}', 'placed', 0, 3, NULL, {t})",
        f"INSERT INTO movements VALUES (5, 'a', '{dropped.id}', 'cancelled', 0, -3, NULL, {t})",
    ]
    return statements, [held, sold, dropped]
