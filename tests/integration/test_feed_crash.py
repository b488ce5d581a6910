"""kill -9 under load, many times, and the change feed still tells the truth: every committed
change has exactly one event, every acknowledged order its events, seqs are gap-free, and no
event describes a change that did not commit (the outbox is written in the commit's
transaction).

The workload is tests/integration/crash_worker.py; after each kill the store is read directly:
its feed's pages beside its movements ledger, orders and stock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
from collections import Counter, defaultdict
from typing import Any

import pytest

from stockade.persistence.pages import PAGE_SIZE, page_events
from tests.integration.crashes import crash_database, run_and_kill

#: An order move's movement kind, and the event type it yields.
EVENT_OF_KIND = {"placed": "order.placed", "confirmed": "order.confirmed",
                 "cancelled": "order.cancelled", "expired": "order.expired"}  # fmt: skip
QUERIES = {
    "events": "SELECT last_seq, first_seq, at, type, sku, meta, data FROM event_pages "
    "ORDER BY last_seq",
    "last": "SELECT last_event_seq FROM stockade_state",
    # one row per order move (a move over several skus shares its seq)
    "moves": "SELECT DISTINCT seq, order_id, kind FROM movements WHERE order_id IS NOT NULL",
    "orders": "SELECT id, status FROM orders",
    "stock": "SELECT sku, location, on_hand, reserved FROM stock",
}


def read_sqlite(path: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {name: conn.execute(query).fetchall() for name, query in QUERIES.items()}
    finally:
        conn.close()


def read_postgres(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    import asyncpg

    async def read() -> dict[str, list[tuple[Any, ...]]]:
        conn = await asyncpg.connect(dsn)
        try:
            return {name: [tuple(r) for r in await conn.fetch(q)] for name, q in QUERIES.items()}
        finally:
            await conn.close()

    return asyncio.run(read())


def check_feed(rows: dict[str, list[tuple[Any, ...]]], acked: dict[str, list[str]]) -> int:
    """The checks of the module docstring over what a store holds; the number of events."""
    stored, _ = page_events(rows["events"], 0, len(rows["events"]) * PAGE_SIZE)
    events = [(seq, kind, json.loads(data)) for seq, kind, _, _, data in stored]
    ((last,),) = rows["last"]
    assert [seq for seq, _, _ in events] == list(range(1, last + 1))  # gap-free, none past last
    # every committed order move has exactly one event, and every order event a committed move
    moves = Counter((order_id, EVENT_OF_KIND[kind]) for _, order_id, kind in rows["moves"])
    told = Counter((data["id"], kind) for _, kind, data in events if kind.startswith("order."))
    assert told == moves
    # each order's events end where the store's order is; the stock events where its stock is
    last_of_order = {data["id"]: data for _, kind, data in events if kind.startswith("order.")}
    assert {oid: data["status"] for oid, data in last_of_order.items()} == dict(rows["orders"])
    last_level: dict[tuple[str, str], Any] = {}
    for _, kind, data in events:
        if kind == "stock.changed":
            level = data["location_level"]
            last_level[level["sku"], level["location"]] = (level["on_hand"], level["reserved"])
    assert last_level == {(sku, loc): (h, r) for sku, loc, h, r in rows["stock"]}
    # every acknowledged order has its placement, and each move acknowledged after it (a new
    # status: a repeated confirm or cancel moves nothing) its event; an acknowledged expiry may
    # still be in the journal at the kill (start-up expires the lapsed hold; see test_crash.py)
    for order_id, (placed, *later) in acked.items():
        assert told[order_id, "order.placed"] == 1, order_id
        for before, status in itertools.pairwise([placed, *later]):
            if status not in (before, "expired"):
                assert told[order_id, f"order.{status}"] == 1, (order_id, status)
    return len(events)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_feed_survives_kill_9_under_load(request, tmp_path, store):
    rng = random.Random(7)
    database, _ = crash_database(request, tmp_path, store)

    def read() -> dict[str, list[tuple[Any, ...]]]:
        if store == "sqlite":
            return read_sqlite(database[len("sqlite:///") :])
        return read_postgres(database)

    acked: dict[str, list[str]] = defaultdict(list)
    counted = []
    for _cycle in range(8):
        for line in run_and_kill("tests.integration.crash_worker", [database], rng.uniform(0.3, 1)):
            order_id, status = line.split(" ")
            acked[order_id].append(status)
        counted.append(check_feed(read(), acked))
    assert counted == sorted(counted) and counted[-1] > 300  # the load ran, and events only grew
