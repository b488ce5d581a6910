"""``stockade import`` and ``stockade export``: stock in bulk (design.md §11).

An import sets stock **through the engine** (``set_stock`` per row), so holds and the
invariants are respected exactly as for any other call: it opens the engine on the database,
which needs ownership of the store. It is all or nothing: every row is checked first — as text
(:mod:`stockade.stockfile`), then against the store (an unknown location, on-hand below what
open holds reserve there, a product above the largest stock) — and only a file without a bad
row is applied, unless the caller skips bad rows. Rows are applied with many ``set_stock`` calls
in flight at once, so the journal commits them in large batches (group commit).

An export reads the stock table without owning the store (:mod:`stockade.persistence.audit`),
so it works while a server runs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TextIO, TypeVar

import msgspec
import trio

from stockade.engine.engine import Engine
from stockade.engine.validation import MAX_STOCK
from stockade.persistence.audit import export_stock
from stockade.stockfile import BadRow, Format, StockRow, duplicates, parse, writer

__all__ = [
    "DEFAULT_CONCURRENCY",
    "PROGRESS_INTERVAL_S",
    "Progress",
    "StockFile",
    "apply_rows",
    "check_against",
    "export_file",
    "read_file",
]

T = TypeVar("T")

#: ``set_stock`` calls an import keeps in flight.
DEFAULT_CONCURRENCY = 1000
PROGRESS_INTERVAL_S = 0.25


class StockFile(msgspec.Struct, gc=False):
    """A stock file read and checked as text: its good ``rows`` and its ``bad`` ones."""

    format: Format
    rows: list[StockRow]
    bad: list[BadRow]


def read_file(lines: Iterable[bytes], format: Format) -> StockFile:
    """Read a stock file's lines (see :func:`stockade.stockfile.parse`), setting aside the
    lines that are bad on their own and every line of a sku-location set more than once."""
    rows: list[StockRow] = []
    bad: list[BadRow] = []
    for item in parse(lines, format):
        if type(item) is StockRow:
            rows.append(item)
        else:
            bad.append(item)  # type: ignore[arg-type]
    twice = duplicates(rows)
    if twice:
        dropped = {b.line for b in twice}
        rows = [row for row in rows if row.line not in dropped]
        bad = sorted(bad + twice, key=lambda b: b.line)
    return StockFile(format, rows, bad)


async def check_against(engine: Engine, rows: list[StockRow]) -> list[BadRow]:
    """The rows ``engine`` would refuse: an unknown location, on-hand below what open holds
    reserve at that location, a product whose on-hand over all its locations would pass
    MAX_STOCK. Reads the stock of each product the rows name (many reads in flight, each
    through the product's actor); cancellable."""
    known = {location.id for location in engine.locations()}
    bad: list[BadRow] = []
    by_sku: dict[str, list[StockRow]] = {}
    for row in rows:
        if row.location not in known:
            bad.append(BadRow(row.line, f"unknown location {row.location!r} (create it first: "
                                        "PUT /v1/locations/{id})"))  # fmt: skip
        else:
            by_sku.setdefault(row.sku, []).append(row)

    async def check(item: tuple[str, list[StockRow]]) -> None:
        sku, mine = item
        held: dict[str, int] = {}
        others = 0  # on-hand at the locations the file leaves as they are
        if engine.has_product(sku):
            named = {row.location for row in mine}
            for level in await engine.stock_by_location(sku):
                held[level.location] = level.reserved
                if level.location not in named:
                    others += level.on_hand
        for row in mine:
            reserved = held.get(row.location, 0)
            if row.on_hand < reserved:
                bad.append(BadRow(row.line, f"on_hand {row.on_hand} is below the {reserved} "
                                            f"units open holds reserve for {row.sku} at "
                                            f"{row.location}"))  # fmt: skip
        total = others + sum(row.on_hand for row in mine)
        if total > MAX_STOCK:
            why = (f"{sku} would have {total} on hand over its locations, above the largest "
                   f"stock, {MAX_STOCK}")  # fmt: skip
            bad.extend(BadRow(row.line, why) for row in mine)

    await _each(list(by_sku.items()), DEFAULT_CONCURRENCY, check)
    bad.sort(key=lambda b: b.line)
    return bad


async def apply_rows(
    engine: Engine,
    rows: list[StockRow],
    concurrency: int = DEFAULT_CONCURRENCY,
    on_row: Callable[[], None] | None = None,
) -> int:
    """Set each row's stock through ``engine``, ``concurrency`` calls in flight; return how
    many were applied. Each call waits for its commit (in durable mode), so when this returns
    every row is committed. The first call refused stops the rest (raised; the rows applied
    before it stay applied). Cancellable, likewise."""
    applied = 0

    async def apply(row: StockRow) -> None:
        nonlocal applied
        await engine.set_stock(row.sku, row.on_hand, row.location)
        applied += 1
        if on_row is not None:
            on_row()

    await _each(rows, concurrency, apply)
    return applied


async def _each(items: list[T], concurrency: int, fn: Callable[[T], Awaitable[None]]) -> None:
    """``await fn(item)`` for every item, ``concurrency`` at a time (a fixed pool of tasks:
    cheaper than a task and a limiter per item). The first exception cancels the rest."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # shared: each item goes to one worker
            await fn(item)

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, len(items))):
            nursery.start_soon(worker)


class Progress:
    """Shows ``done`` of ``total`` rows on ``stream`` every PROGRESS_INTERVAL_S, overwriting
    one line, while :meth:`run` runs; only when ``stream`` is a terminal."""

    def __init__(self, stream: TextIO, total: int, what: str = "imported") -> None:
        self.stream = stream
        self.total = total
        self.what = what
        self.done = 0
        self.shown = stream.isatty()
        self._started = time.perf_counter()

    def step(self) -> None:
        self.done += 1

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        seconds = time.perf_counter() - self._started
        return f"\r{self.what} {self.done:,} of {self.total:,} rows ({share:.0%}, {seconds:.1f} s)"

    async def run(self) -> None:
        """Redraw until cancelled; then draw the last state and end the line."""
        if not self.shown:
            return
        try:
            while True:
                self.stream.write(self.line())
                self.stream.flush()
                await trio.sleep(PROGRESS_INTERVAL_S)
        finally:
            self.stream.write(self.line() + "\n")
            self.stream.flush()


async def export_file(database: str, stream: TextIO, format: Format) -> int:
    """Write every stock row of the store at ``database`` to ``stream`` in ``format``, in
    (sku, location) order, read-only (whether or not a server owns the store); return how
    many rows. Raises as :func:`stockade.persistence.audit.export_stock`."""
    write = writer(stream, format)
    return await export_stock(database, write)
