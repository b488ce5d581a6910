"""Following the engine's cursors to the end, for the history tests of every store."""

from __future__ import annotations

from typing import Any

from stockade import Engine, Movement, Order


async def all_orders(engine: Engine, limit: int, **filters: Any) -> list[Order]:
    """Every page of ``list_orders``, following the cursor (the last order's id)."""
    out: list[Order] = []
    after = None
    while True:
        page = await engine.list_orders(after=after, limit=limit, **filters)
        assert len(page) <= limit
        out += page
        if len(page) < limit:
            return out
        after = page[-1].id


async def all_movements(engine: Engine, sku: str, limit: int) -> list[Movement]:
    """Every page of ``movements``, following the cursor (the last movement's seq)."""
    out: list[Movement] = []
    after = None
    while True:
        page = await engine.movements(sku, after=after, limit=limit)
        out += page
        if not page:
            return out
        assert len({m.seq for m in page}) <= limit
        after = page[-1].seq


def newest_first(orders: list[Order]) -> list[Order]:
    """How list_orders orders them: ``(created_at, id)`` descending."""
    return sorted(orders, key=lambda o: (o.created_at, o.id), reverse=True)
