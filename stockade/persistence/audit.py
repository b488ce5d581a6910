"""Reading a store without owning it: the books check (:mod:`stockade.persistence.books`) and
the stock export, for SQLite and memory here, PostgreSQL in :mod:`~stockade.persistence.
audit_postgres`.

A reader never takes the owner's lock, so it works whether or not a server owns the store, and
never writes. SQLite: a plain connection opened read-only (``mode=ro``), which WAL lets read
beside the owner's writer; PostgreSQL: a session of its own, without the advisory lock. Each
reads inside one transaction (SQLite's deferred read transaction, PostgreSQL's ``REPEATABLE
READ READ ONLY``), so it sees one committed state even while a server commits: every batch
commits its movements, stock and orders together, so any committed state balances.

Rows stream through cursors; the check aggregates the ledger in SQL (``GROUP BY``) and keeps
only the open holds' sums in memory, so a large store is checked in bounded memory.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from stockade.errors import IncompatibleStore, InvalidRequest, StoreUnavailable
from stockade.persistence.books import (
    BooksCheck,
    BooksReport,
    CountRow,
    LevelRow,
    OrderMove,
    Tally,
)
from stockade.persistence.journal import Store
from stockade.persistence.keys import BUSY_TIMEOUT_S
from stockade.persistence.memory import MemoryStore, StoreState
from stockade.persistence.rows import (
    ORDER_COLUMNS,
    ORDER_WIDTH,
    order_from_row,
    order_row,
    rules_from_row,
)
from stockade.persistence.schema import RETURNS_SINCE, RULES_SINCE, SCHEMA_VERSION
from stockade.persistence.sql import LOAD_RULES
from stockade.persistence.sqlite import SQLiteStore
from stockade.persistence.sqlite_errors import sqlite_errors

__all__ = [
    "COUNTS",
    "EXPORT_STOCK",
    "LEVELS",
    "ORDER_MOVES",
    "order_moves",
    "ORPHANS",
    "READABLE_SINCE",
    "StockRowSink",
    "check_database",
    "check_state",
    "check_store",
    "check_schema_version",
    "count_row",
    "export_stock",
    "level_row",
    "open_sqlite_reader",
    "read_schema_version",
    "split_order_row",
]

#: The oldest schema version the readers understand (stock per location, order allocations).
READABLE_SINCE = 3

#: Every order with its movements summed per kind and (sku, location), one order's rows
#: together; an order without movements has one row with NULLs after its columns.
ORDER_MOVES = (
    f"SELECT {', '.join('o.' + c.strip() for c in ORDER_COLUMNS.split(','))}, "
    "m.kind, m.sku, m.location, m.d_on_hand, m.d_reserved FROM orders AS o LEFT JOIN ("
    "SELECT order_id, kind, sku, location, CAST(sum(d_on_hand) AS BIGINT) AS d_on_hand, "
    "CAST(sum(d_reserved) AS BIGINT) AS d_reserved FROM movements WHERE order_id IS NOT NULL "
    "GROUP BY order_id, kind, sku, location) AS m ON m.order_id = o.id ORDER BY o.id"
)


def order_moves(version: int) -> str:
    """:data:`ORDER_MOVES` for a database at schema ``version``: one from before returns
    (:data:`~stockade.persistence.schema.RETURNS_SINCE`) has no return columns, and one from
    before the sale's rules (``RULES_SINCE``) no customer columns, read as NULL (nothing
    returned, no customer), so a reader need not upgrade it."""
    sql = ORDER_MOVES
    if version < RULES_SINCE:
        for column in ("o.customer", "o.reference", "o.metadata"):
            sql = sql.replace(column, "NULL")
    if version < RETURNS_SINCE:
        sql = sql.replace("o.returned", "NULL").replace("o.written_off", "NULL")
    return sql


#: Order ids that movements name and the orders table lacks, with how many rows name each.
ORPHANS = (
    "SELECT order_id, count(*) FROM movements AS m WHERE order_id IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM orders AS o WHERE o.id = m.order_id) GROUP BY order_id ORDER BY order_id"
)
#: Each (sku, location) with a stock row or movements, in sku order: whether it has a row,
#: the row's values, and what its movements add up to (books.LevelRow).
LEVELS = (
    "SELECT sku, location, max(in_stock), CAST(sum(on_hand) AS BIGINT), "
    "CAST(sum(reserved) AS BIGINT), CAST(sum(m_on_hand) AS BIGINT), "
    "CAST(sum(m_reserved) AS BIGINT) FROM ("
    "SELECT sku, location, 1 AS in_stock, on_hand, reserved, 0 AS m_on_hand, 0 AS m_reserved "
    "FROM stock UNION ALL "
    "SELECT sku, location, 0, 0, 0, sum(d_on_hand), sum(d_reserved) FROM movements "
    "GROUP BY sku, location) AS levels GROUP BY sku, location ORDER BY sku, location"
)
#: Every per_customer count with its order's status, customer and lines (NULLs for an order
#: not in the orders table), in (sku, order) order.
COUNTS = (
    "SELECT c.sku, c.order_id, c.customer, c.units, o.status, o.customer, o.lines, o.returned "
    "FROM customer_counts AS c LEFT JOIN orders AS o ON o.id = c.order_id "
    "ORDER BY c.sku, c.order_id"
)
_lines = msgspec.json.Decoder(dict[str, int])

#: What ``stockade export`` writes.
EXPORT_STOCK = "SELECT sku, location, on_hand FROM stock ORDER BY sku, location"

#: Takes one exported stock row: (sku, location, on_hand).
StockRowSink = Callable[[tuple[str, str, int]], None]


def check_schema_version(version: int | None, where: str) -> None:
    """Refuse to read a database that is not stockade's (StoreUnavailable) or whose schema
    this code does not read (IncompatibleStore)."""
    if version is None:
        raise StoreUnavailable(f"{where} is not a stockade database (it has no stockade_state)")
    if version > SCHEMA_VERSION:
        raise IncompatibleStore(
            f"{where} has schema version {version}, newer than this stockade "
            f"({SCHEMA_VERSION}): upgrade stockade to read it"
        )
    if version < READABLE_SINCE:
        raise IncompatibleStore(
            f"{where} has schema version {version}, from an older stockade: start `stockade "
            "serve` (or `stockade import`) on it once to upgrade it, then read it"
        )


# -- SQLite ---------------------------------------------------------------------------------


def open_sqlite_reader(path: str) -> sqlite3.Connection:
    """A read-only connection to the SQLite file at ``path`` (never the owner's lock; never
    creates the file). Blocks. Raises StoreUnavailable for a missing file."""
    if not os.path.exists(path):
        raise StoreUnavailable(f"no database at {path}")
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    with sqlite_errors(path):
        return sqlite3.connect(
            uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )


def read_schema_version(conn: sqlite3.Connection) -> int | None:
    """The file's schema version; None if it is not a stockade database."""
    try:
        row = conn.execute("SELECT schema_version FROM stockade_state").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else int(row[0])


def split_order_row(row: Any) -> tuple[tuple[Any, ...], OrderMove | None]:
    """A row of :data:`ORDER_MOVES` as the order's columns and its movement sum (or None)."""
    values = tuple(row)
    move: OrderMove | None = None if values[ORDER_WIDTH] is None else values[ORDER_WIDTH:]
    return values[:ORDER_WIDTH], move


def count_row(row: Any) -> CountRow:
    """A row of :data:`COUNTS` as a books.CountRow (the order's units of the sku not
    returned, from its lines and ``returned``; 0 when they cannot be read, which the orders
    pass reports)."""
    sku, order_id, customer, units, status, order_customer, lines, returned = row
    line: int | None = None
    if lines is not None:
        try:
            line = _lines.decode(lines).get(sku, 0)
            if returned is not None:
                line -= _lines.decode(returned).get(sku, 0)
        except msgspec.DecodeError:
            line = 0
    return sku, order_id, customer, units, status, order_customer, line


def level_row(row: Any) -> LevelRow:
    """A row of :data:`LEVELS` as a books.LevelRow."""
    sku, location, has_row, on_hand, reserved, ledger_on_hand, ledger_reserved = row
    return sku, location, bool(has_row), on_hand, reserved, ledger_on_hand, ledger_reserved


def _check_sqlite(conn: sqlite3.Connection, path: str, tally: Tally) -> BooksReport:
    conn.execute("BEGIN")  # one read transaction: every query sees the same commit
    try:
        version = read_schema_version(conn)
        check_schema_version(version, path)
        assert version is not None
        rules = (
            [rules_from_row(r) for r in conn.execute(LOAD_RULES)] if version >= RULES_SINCE else []
        )
        check = BooksCheck(order_from_row, rules)
        for row in conn.execute(order_moves(version)):
            tally.add(check.order_row(*split_order_row(row)))
        tally.add(check.end_orders())
        for order_id, count in conn.execute(ORPHANS):
            tally.add(check.orphan(order_id, count))
        for row in conn.execute(LEVELS):
            tally.add(check.level_row(level_row(row)))
        tally.add(check.end_levels())
        if version >= RULES_SINCE:
            for row in conn.execute(COUNTS):
                tally.add(check.count_row(count_row(row)))
        tally.add(check.end_counts())
    finally:
        conn.execute("COMMIT")
    return check.report(tally)


def _export_sqlite(conn: sqlite3.Connection, path: str, sink: StockRowSink) -> int:
    count = 0
    conn.execute("BEGIN")
    try:
        check_schema_version(read_schema_version(conn), path)
        for row in conn.execute(EXPORT_STOCK):
            sink(row)
            count += 1
    finally:
        conn.execute("COMMIT")
    return count


async def _in_sqlite(path: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
    """Run ``work`` on a read-only connection to ``path`` in a worker thread. Cancelling
    interrupts the statement running (``sqlite3.Connection.interrupt``) and returns at once."""
    conn: sqlite3.Connection | None = None

    def run() -> Any:
        nonlocal conn
        conn = open_sqlite_reader(path)
        try:
            with sqlite_errors(path):  # busy past the timeout, I/O, interrupted, malformed
                return work(conn)
        finally:
            conn.close()

    try:
        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)
    except trio.Cancelled:
        if conn is not None:
            conn.interrupt()  # the abandoned thread stops at its next step and closes
        raise


# -- memory ---------------------------------------------------------------------------------


def check_state(state: StoreState, tally: Tally) -> BooksReport:
    """The books check over a memory store's state (which must keep its movements). Never
    blocks."""
    if state.movements is None:
        raise InvalidRequest("this memory store keeps no movements ledger: nothing to check")
    sums: dict[tuple[str, str, str, str], list[int]] = {}
    levels: dict[tuple[str, str], list[int]] = {}
    for m in state.movements:
        if m.order_id is not None:
            moved = sums.setdefault((m.order_id, m.kind, m.sku, m.location), [0, 0])
            moved[0] += m.d_on_hand
            moved[1] += m.d_reserved
        level = levels.setdefault((m.sku, m.location), [0, 0])
        level[0] += m.d_on_hand
        level[1] += m.d_reserved
    by_order: dict[str, list[OrderMove]] = {}
    for (order_id, kind, sku, location), (d_on_hand, d_reserved) in sorted(sums.items()):
        by_order.setdefault(order_id, []).append((kind, sku, location, d_on_hand, d_reserved))
    check = BooksCheck(order_from_row, state.rules.values())
    for order_id in sorted(state.orders):
        columns = order_row(state.orders[order_id])
        moves: list[OrderMove | None] = [*by_order.get(order_id, [])] or [None]
        for move in moves:
            tally.add(check.order_row(columns, move))
    tally.add(check.end_orders())
    for order_id in sorted(set(by_order) - set(state.orders)):
        count = sum(1 for m in state.movements if m.order_id == order_id)
        tally.add(check.orphan(order_id, count))
    for site in sorted(set(levels) | set(state.stock)):
        on_hand, reserved = state.stock.get(site, (0, 0))
        summed = levels.get(site, [0, 0])
        tally.add(check.level_row((*site, site in state.stock, on_hand, reserved, *summed)))  # type: ignore[arg-type]
    tally.add(check.end_levels())
    for (sku, order_id), (customer, units) in sorted(state.counts.items()):
        order = state.orders.get(order_id)
        tally.add(check.count_row((
            sku, order_id, customer, units, None if order is None else order.status,
            None if order is None else order.customer,
            None if order is None else order.lines.get(sku, 0) - order.returned.get(sku, 0),
        )))  # fmt: skip
    tally.add(check.end_counts())
    return check.report(tally)


# -- what to read ---------------------------------------------------------------------------


def _locate(database: str) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", dsn)`` for a database URL; InvalidRequest for
    anything else (a memory store keeps nothing another process could read)."""
    if database.startswith("sqlite:///") and len(database) > len("sqlite:///"):
        return "sqlite", database[len("sqlite:///") :]
    if database.startswith(("postgresql://", "postgres://")):
        return "postgresql", database
    raise InvalidRequest(
        f"a stored database is needed: sqlite:///FILE or postgresql://..., not {database!r}"
    )


async def check_database(database: str, tally: Tally) -> BooksReport:
    """The books check of the store at ``database`` (a URL), read-only, whether or not a server
    owns it; findings go to ``tally`` as they are made. Blocks until the whole store has been
    read (in a worker thread, or PostgreSQL's loop); cancellable. Raises InvalidRequest for a
    URL that names no stored database, StoreUnavailable when it cannot be read, CorruptStore
    for a file that is not a sound database,
    IncompatibleStore for a schema this stockade does not read."""
    dialect, where = _locate(database)
    if dialect == "sqlite":
        report: BooksReport = await _in_sqlite(where, lambda c: _check_sqlite(c, where, tally))
        return report
    from stockade.persistence.audit_postgres import check_postgres

    return await check_postgres(where, tally)


async def check_store(store: Store, tally: Tally) -> BooksReport:
    """The books check of ``store`` (an engine's, opened or not) through a reader of its own;
    see :func:`check_database`. A memory store is checked in this process (InvalidRequest if
    it keeps no movements ledger)."""
    if isinstance(store, SQLiteStore):
        return await check_database(f"sqlite:///{store.path}", tally)
    if isinstance(store, MemoryStore):
        await trio.lowlevel.checkpoint()
        if not store.keep_state:
            raise InvalidRequest("this engine keeps its state in memory only: nothing to check")
        return check_state(store.state, tally)
    dsn = getattr(store, "dsn", None)
    if isinstance(dsn, str):
        return await check_database(dsn, tally)
    raise InvalidRequest(f"cannot check a {type(store).__name__}")


async def export_stock(database: str, sink: StockRowSink) -> int:
    """Hand every stock row of the store at ``database`` to ``sink``, in (sku, location) order,
    read-only; return how many. ``sink`` runs in a worker thread (or PostgreSQL's loop), one
    row at a time. Raises as :func:`check_database`."""
    dialect, where = _locate(database)
    if dialect == "sqlite":
        count: int = await _in_sqlite(where, lambda c: _export_sqlite(c, where, sink))
        return count
    from stockade.persistence.audit_postgres import export_postgres

    return await export_postgres(where, sink)
