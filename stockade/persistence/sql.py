"""The SQL both stores run, written once with ``?`` placeholders (:func:`numbered` turns them
into PostgreSQL's ``$1, $2, ...``). Pure text and pure functions: no I/O."""

from __future__ import annotations

import re

from stockade.engine.journal import OrderQuery
from stockade.persistence.rows import ORDER_COLUMNS

__all__ = [
    "GET_ORDER",
    "INSERT_MOVEMENT",
    "INSERT_ORDER",
    "LOAD_CHANNELS",
    "LOAD_KEYS",
    "LOAD_LOCATIONS",
    "LOAD_ORDERS",
    "LOAD_STOCK",
    "MOVEMENTS",
    "ORDER_EXISTS",
    "UPDATE_ORDER",
    "UPDATE_STOCK",
    "UPSERT_CHANNEL",
    "UPSERT_KEY",
    "UPSERT_LOCATION",
    "UPSERT_STOCK_ROW",
    "INSERT_EVENT",
    "SET_LAST_EVENT",
    "FEED_BOUNDS",
    "PRUNE_EVENTS",
    "STOCK_OF",
    "STOCK_OF_PG",
    "SKUS_AT",
    "SKUS_AT_PG",
    "events_page",
    "movements_params",
    "numbered",
    "orders_page",
]

LOAD_STOCK = "SELECT sku, location, on_hand, reserved FROM stock"
LOAD_LOCATIONS = "SELECT id, name, priority, active FROM locations"
LOAD_CHANNELS = "SELECT id, locations FROM channels"
#: Open holds, orders inside the idempotency window, and orders a remembered key names.
LOAD_ORDERS = (
    f"SELECT {ORDER_COLUMNS} FROM orders WHERE status = 'reserved' OR created_at > ? "
    "OR id IN (SELECT order_id FROM idempotency_keys WHERE at > ?)"
)
LOAD_KEYS = "SELECT key, kind, order_id, fingerprint, at FROM idempotency_keys WHERE at > ?"
GET_ORDER = f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?"
ORDER_EXISTS = "SELECT 1 FROM orders WHERE id = ?"
#: A page of a product's movements after a seq: the first ``limit`` rows, and the rest of the
#: change the last of them belongs to (a page never splits one seq's rows, or paging by seq
#: would skip the rest). Parameters: :func:`movements_params`.
MOVEMENTS = (
    "SELECT seq, sku, location, kind, order_id, d_on_hand, d_reserved, reason, at "
    "FROM movements WHERE sku = ? AND seq > ? AND seq <= COALESCE(("
    "SELECT seq FROM movements WHERE sku = ? AND seq > ? ORDER BY seq, location "
    "LIMIT 1 OFFSET ?), 9223372036854775807) ORDER BY seq, location"
)

INSERT_MOVEMENT = "INSERT INTO movements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Two steps, because SQLite checks CHECK constraints on an upsert's candidate row (a bare
# delta) before resolving the conflict: create at zero, then add.
UPSERT_STOCK_ROW = "INSERT INTO stock VALUES (?, ?, 0, 0) ON CONFLICT (sku, location) DO NOTHING"
UPDATE_STOCK = (
    "UPDATE stock SET on_hand = on_hand + ?, reserved = reserved + ? WHERE sku = ? AND location = ?"
)
INSERT_ORDER = f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: An order's id, created_at, key, channel and location never change: the rest may.
UPDATE_ORDER = (
    "UPDATE orders SET status = ?, lines = ?, expires_at = ?, allocations = ? WHERE id = ?"
)
UPSERT_KEY = (
    "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "kind = excluded.kind, order_id = excluded.order_id, fingerprint = excluded.fingerprint, "
    "at = excluded.at"
)
UPSERT_LOCATION = (
    "INSERT INTO locations VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "name = excluded.name, priority = excluded.priority, active = excluded.active"
)
UPSERT_CHANNEL = (
    "INSERT INTO channels VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET "
    "locations = excluded.locations"
)


INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?, ?, ?)"
SET_LAST_EVENT = "UPDATE stockade_state SET last_event_seq = ?"
FEED_BOUNDS = "SELECT (SELECT min(seq) FROM events), last_event_seq FROM stockade_state"
PRUNE_EVENTS = (
    "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE at < ? ORDER BY seq LIMIT ?)"
)
#: The stock rows of some products (SQLite: expanded to as many ``?`` as skus).
STOCK_OF = "SELECT sku, location, on_hand, reserved FROM stock WHERE sku IN ({})"
STOCK_OF_PG = "SELECT sku, location, on_hand, reserved FROM stock WHERE sku = ANY($1::text[])"
#: The skus stocked at some locations (a location deactivated or reactivated: rare, so a scan
#: of the stock table, which is keyed by sku first, is acceptable).
SKUS_AT = "SELECT DISTINCT sku FROM stock WHERE location IN ({})"
SKUS_AT_PG = "SELECT DISTINCT sku FROM stock WHERE location = ANY($1::text[])"


def events_page(after: int, limit: int, types: tuple[str, ...] | None) -> tuple[str, list[object]]:
    """The SELECT for a page of the change feed after ``after`` (by seq), and its parameters."""
    params: list[object] = [after]
    where = "seq > ?"
    if types:
        where += f" AND type IN ({', '.join('?' * len(types))})"
        params += list(types)
    params.append(limit)
    return f"SELECT seq, type, at, sku, data FROM events WHERE {where} ORDER BY seq LIMIT ?", params


def orders_page(query: OrderQuery) -> tuple[str, list[object]]:
    """The SELECT for a page of orders, newest first (served by the ``orders_by_created`` /
    ``orders_by_status`` indexes), and its parameters."""
    conditions: list[str] = []
    params: list[object] = []
    if query.status is not None:
        conditions.append("status = ?")
        params.append(query.status)
    if query.created_after is not None:
        conditions.append("created_at > ?")
        params.append(query.created_after)
    if query.created_before is not None:
        conditions.append("created_at < ?")
        params.append(query.created_before)
    if query.after is not None:
        conditions.append(
            "(created_at < (SELECT created_at FROM orders WHERE id = ?) OR "
            "(created_at = (SELECT created_at FROM orders WHERE id = ?) AND id < ?))"
        )
        params += [query.after, query.after, query.after]
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    params.append(query.limit)
    sql = f"SELECT {ORDER_COLUMNS} FROM orders{where} ORDER BY created_at DESC, id DESC LIMIT ?"
    return sql, params


def movements_params(sku: str, after: int | None, limit: int) -> tuple[str, int, str, int, int]:
    """The parameters of :data:`MOVEMENTS`."""
    return sku, after or 0, sku, after or 0, limit - 1


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)
