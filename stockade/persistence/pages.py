"""How the SQL stores keep the change feed: consecutive events packed into pages (pure, no I/O).

A row per event cost PostgreSQL more than the rest of an order's commit did for its feed alone
(a heap tuple, two index entries and their WAL for every ~220 bytes of JSON: measured, 4 µs of
backend CPU and 400 WAL bytes an order). A committed batch's events are therefore written as
``event_pages`` rows of up to :data:`PAGE_SIZE` consecutive events each (a batch of a thousand
orders: four rows, which PostgreSQL compresses), and a batch of one event as one row of the
plain form. A page never spans two batches, so it is written in its batch's transaction.

A row of ``event_pages`` (:data:`PageRow`) is ``last_seq, first_seq, at, type, sku, meta,
data``, in one of two forms:

* one event (``meta`` NULL): ``first_seq = last_seq`` is its seq, and ``type``, ``at``, ``sku``
  and ``data`` are its own, as the rows of the ``events`` table before pages were;
* a packed page (``type`` NULL): events ``first_seq..last_seq``, ``meta`` the JSON array of
  their ``[type, at, sku]`` and ``data`` the JSON array of their payloads, in seq order; ``at``
  is the newest of their times, so a page is pruned once all of its events are old enough.

Both forms come back as the :data:`~stockade.engine.feed.EventRow` tuples they were made from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from stockade.engine.feed import EventRow
from stockade.errors import CorruptStore

__all__ = ["PAGE_SIZE", "PAGES_PER_READ", "PageRow", "page_events", "pages_of"]

#: Events a page holds at most: a reader asking for the events after a seq decodes at most
#: this many it did not ask for, and the API's largest page (1,000) spans at most five.
PAGE_SIZE = 256
#: Pages a store reads in one query while it fills a page of events (more when types filter).
PAGES_PER_READ = 8

#: last_seq, first_seq, at, type, sku, meta, data (see the module docstring).
PageRow = tuple[int, int, float, str | None, str | None, str | None, str]

_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(list[tuple[str, float, str | None]])
_data_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def pages_of(events: Sequence[EventRow], size: int = PAGE_SIZE) -> list[PageRow]:
    """The ``event_pages`` rows that hold ``events`` (consecutive, in seq order): pages of up
    to ``size`` events, a lone event in the plain form."""
    pages: list[PageRow] = []
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        if len(chunk) == 1:
            seq, kind, at, sku, data = chunk[0]
            pages.append((seq, seq, at, kind, sku, None, data))
            continue
        meta = _encoder.encode([(kind, at, sku) for _, kind, at, sku, _ in chunk]).decode()
        data = f"[{','.join([row[4] for row in chunk])}]"
        newest = max(row[2] for row in chunk)
        pages.append((chunk[-1][0], chunk[0][0], newest, None, None, meta, data))
    return pages


def page_events(
    rows: Iterable[Any], after: int, limit: int, types: tuple[str, ...] | None = None
) -> tuple[list[EventRow], bool]:
    """The events after ``after`` in ``rows`` (``event_pages`` rows in seq order), of the
    ``types`` wanted (None: all), at most ``limit`` of them; and whether ``limit`` was reached.
    Payloads of events not wanted are never decoded. Raises CorruptStore for a page that
    cannot be read back."""
    out: list[EventRow] = []
    for row in rows:
        last_seq, first_seq, at, kind, sku, meta, data = row
        if meta is None:
            if last_seq > after and (types is None or kind in types):
                out.append((last_seq, kind, at, sku, data))
        else:
            _unpack(last_seq, first_seq, meta, data, after, types, out)
        if len(out) >= limit:
            return out[:limit], True
    return out, False


def _unpack(
    last_seq: int, first_seq: int, meta: str, data: str | bytes, after: int,
    types: tuple[str, ...] | None, out: list[EventRow],
) -> None:  # fmt: skip
    try:
        heads = _meta_decoder.decode(meta)
        start = max(after + 1 - first_seq, 0)
        wanted = [
            i for i in range(start, len(heads)) if types is None or heads[i][0] in types
        ]  # fmt: skip
        if len(heads) != last_seq - first_seq + 1:
            raise ValueError(f"{len(heads)} events for seqs {first_seq}..{last_seq}")
        if not wanted:
            return
        payloads = _data_decoder.decode(data)
        if len(payloads) != len(heads):
            raise ValueError(f"{len(payloads)} payloads for {len(heads)} events")
    except (msgspec.DecodeError, ValueError) as exc:
        page = f"{first_seq}..{last_seq}"
        raise CorruptStore(f"the feed's page {page} cannot be read: {exc}") from exc
    for i in wanted:
        kind, at, sku = heads[i]
        out.append((first_seq + i, kind, at, sku, bytes(payloads[i]).decode()))
