"""The SQL both stores run, written once with ``?`` placeholders (:func:`numbered` turns them
into PostgreSQL's ``$1, $2, ...``). Pure text and pure functions: no I/O."""

from __future__ import annotations

import re

from stockade.engine.storage import OrderQuery
from stockade.persistence.rows import ORDER_COLUMNS, ORDER_WIDTH, BatchRows, OrderRow

__all__ = [
    "GET_ORDER",
    "INSERT_MOVEMENT",
    "INSERT_ORDER",
    "CAP_COUNT",
    "CLEAR_COUNTS",
    "DELETE_COUNT",
    "DELETE_RULES",
    "LOAD_CHANNELS",
    "LOAD_COUNTS",
    "LOAD_RULES",
    "UPSERT_COUNT",
    "UPSERT_RULES",
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
    "INSERT_PAGE",
    "FINISH_BATCH_PG",
    "SET_LAST_EVENT",
    "FEED_BOUNDS",
    "PRUNE_EVENTS",
    "STOCK_OF",
    "STOCK_OF_PG",
    "SKUS_AT",
    "SKUS_AT_PG",
    "MOVE_STOCK_PG",
    "MOVE_AND_READ_STOCK_PG",
    "INSERT_STOCK",
    "movements_params",
    "pages_after",
    "numbered",
    "orders_page",
    "rules_writes",
    "update_order_params",
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
INSERT_ORDER = f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({', '.join('?' * ORDER_WIDTH)})"
#: An order's id, created_at, key, channel and location never change: the rest may.
UPDATE_ORDER = (
    "UPDATE orders SET status = ?, lines = ?, expires_at = ?, allocations = ?, returned = ?, "
    "written_off = ? WHERE id = ?"
)


def update_order_params(row: OrderRow) -> tuple[object, ...]:
    """The parameters of :data:`UPDATE_ORDER` for an order's row."""
    return row[1], row[2], row[4], row[6], row[9], row[10], row[0]


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


LOAD_RULES = (
    "SELECT sku, per_order, per_customer, opens_at, closes_at, low_stock_at, counting_since "
    "FROM product_rules"
)
#: The live per_customer counts: rows of orders still holding or bought (a row whose order
#: never committed, written just before a crash, is left out).
LOAD_COUNTS = (
    "SELECT c.sku, c.order_id, c.customer, c.units FROM customer_counts c "
    "JOIN orders o ON o.id = c.order_id WHERE o.status IN ('reserved', 'confirmed')"
)
UPSERT_RULES = (
    "INSERT INTO product_rules VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET "
    "per_order = excluded.per_order, per_customer = excluded.per_customer, "
    "opens_at = excluded.opens_at, closes_at = excluded.closes_at, "
    "low_stock_at = excluded.low_stock_at, counting_since = excluded.counting_since"
)
DELETE_RULES = "DELETE FROM product_rules WHERE sku = ?"
CLEAR_COUNTS = "DELETE FROM customer_counts WHERE sku = ?"
UPSERT_COUNT = (
    "INSERT INTO customer_counts VALUES (?, ?, ?, ?) ON CONFLICT (sku, order_id) DO UPDATE SET "
    "customer = excluded.customer, units = excluded.units"
)
DELETE_COUNT = "DELETE FROM customer_counts WHERE sku = ? AND order_id = ?"
CAP_COUNT = "UPDATE customer_counts SET units = ? WHERE sku = ? AND order_id = ? AND units > ?"

#: One row of the feed's ``event_pages`` (see :mod:`stockade.persistence.pages`).
INSERT_PAGE = "INSERT INTO event_pages VALUES (?, ?, ?, ?, ?, ?, ?)"
#: PostgreSQL: a batch's last statement with the feed on: its pages ($3..$9, the columns of
#: ``event_pages`` as arrays) inserted, and last_seq ($1) and last_event_seq ($2) set, in one
#: round trip.
FINISH_BATCH_PG = (
    "WITH pages AS (INSERT INTO event_pages SELECT * FROM unnest($3::bigint[], $4::bigint[], "
    "$5::float8[], $6::text[], $7::text[], $8::text[], $9::text[])) "
    "UPDATE stockade_state SET last_seq = $1, last_event_seq = $2"
)
SET_LAST_EVENT = "UPDATE stockade_state SET last_event_seq = ?"
#: The oldest event kept (pages never overlap: the first page by last_seq starts first).
FEED_BOUNDS = (
    "SELECT (SELECT first_seq FROM event_pages ORDER BY last_seq LIMIT 1), last_event_seq "
    "FROM stockade_state"
)
#: Up to ``limit`` of the oldest pages whose events are all older than a time, found through
#: the primary key since times grow with seqs (no index on ``at`` to keep up at every commit).
#: Only a run from the oldest page is deleted: a page out of time order (a clock stepped back)
#: stops it, so the feed kept never has a hole. Parameters: limit, limit, before.
PRUNE_EVENTS = (
    "DELETE FROM event_pages WHERE last_seq IN "
    "(SELECT last_seq FROM event_pages ORDER BY last_seq LIMIT ?) AND last_seq < COALESCE(("
    "SELECT min(last_seq) FROM (SELECT last_seq, at FROM event_pages ORDER BY last_seq LIMIT ?) "
    "AS head WHERE at >= ?), 9223372036854775807)"
)
#: The stock rows of some products (SQLite: expanded to as many ``?`` as skus).
STOCK_OF = "SELECT sku, location, on_hand, reserved FROM stock WHERE sku IN ({})"
STOCK_OF_PG = "SELECT sku, location, on_hand, reserved FROM stock WHERE sku = ANY($1::text[])"
#: The skus stocked at some locations (a location deactivated or reactivated: rare, so a scan
#: of the stock table, which is keyed by sku first, is acceptable).
SKUS_AT = "SELECT DISTINCT sku FROM stock WHERE location IN ({})"
SKUS_AT_PG = "SELECT DISTINCT sku FROM stock WHERE location = ANY($1::text[])"
#: PostgreSQL: a batch's summed stock deltas ($1..$4: skus, locations, d_on_hand, d_reserved,
#: as arrays) added to the rows that exist, in one statement; it returns those rows as they
#: are now. A (sku, location) it does not return has no row yet (:data:`INSERT_STOCK`).
MOVE_STOCK_PG = (
    "WITH d AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) "
    "AS d(sku, location, d_on_hand, d_reserved)), "
    "moved AS (UPDATE stock SET on_hand = stock.on_hand + d.d_on_hand, "
    "reserved = stock.reserved + d.d_reserved FROM d "
    "WHERE stock.sku = d.sku AND stock.location = d.location "
    "RETURNING stock.sku, stock.location, stock.on_hand, stock.reserved) "
    "SELECT * FROM moved"
)
#: :data:`MOVE_STOCK_PG`, also returning the other rows of the skus in $5 (the feed needs every
#: location of a product it reports): the read-back the feed needs, without a round trip.
MOVE_AND_READ_STOCK_PG = (
    f"{MOVE_STOCK_PG} UNION ALL SELECT sku, location, on_hand, reserved FROM stock s "
    "WHERE s.sku = ANY($5::text[]) AND NOT EXISTS "
    "(SELECT 1 FROM d WHERE d.sku = s.sku AND d.location = s.location)"
)
#: A stock row a batch makes: its summed deltas are its values.
INSERT_STOCK = "INSERT INTO stock VALUES (?, ?, ?, ?)"


def pages_after(types: tuple[str, ...] | None) -> tuple[str, list[object]]:
    """The SELECT for the pages holding events after a seq, oldest first, and its parameters
    after the first two (after, how many pages). With ``types``, only pages that may hold one:
    a plain row of one of them, or a packed page whose metadata names one (a page whose skus
    merely spell one is read and passed over), so a reader of a rare type far behind never
    has the payloads of the pages between sent to it."""
    where = "last_seq > ?"
    params: list[object] = []
    if types:
        plain = f"type IN ({', '.join('?' * len(types))})"
        packed = " OR ".join("meta LIKE ?" for _ in types)
        where += f" AND ({plain} OR {packed})"
        params += [*types, *(f'%"{kind}"%' for kind in types)]
    statement = (
        "SELECT last_seq, first_seq, at, type, sku, meta, data FROM event_pages "
        f"WHERE {where} ORDER BY last_seq LIMIT ?"
    )
    return statement, params


def orders_page(query: OrderQuery) -> tuple[str, list[object]]:
    """The SELECT for a page of orders, newest first (served by the ``orders_by_created`` /
    ``orders_by_status`` / ``orders_by_customer`` indexes), and its parameters."""
    conditions: list[str] = []
    params: list[object] = []
    if query.customer is not None:
        conditions.append("customer = ?")
        params.append(query.customer)
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


def rules_writes(rows: BatchRows) -> list[tuple[str, list[tuple[object, ...]]]]:
    """The statements (``?`` placeholders) and parameters that write a batch's rules and
    counts, in the order they must run."""
    return [
        (UPSERT_RULES, [r for r in rows.rules if any(v is not None for v in r[1:6])]),
        (DELETE_RULES, [(r[0],) for r in rows.rules if all(v is None for v in r[1:6])]),
        (CLEAR_COUNTS, [(sku,) for sku in rows.cleared]),
        (UPSERT_COUNT, [c for c in rows.counts if c[3] > 0]),
        (DELETE_COUNT, [(c[0], c[1]) for c in rows.counts if c[3] <= 0]),
        (CAP_COUNT, [(cap, sku, order_id, cap) for sku, order_id, cap in rows.caps]),
    ]
