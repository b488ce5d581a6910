"""The change feed's public events, and the hub that hands committed ones to live readers.

Every committed change yields public events (design.md §9), numbered by one gap-free ``seq``
per store in commit order and written by the store in the same transaction as the change (an
outbox: none is lost, none describes a change that did not commit). The journal publishes each
committed batch's events to the :class:`FeedHub`; :meth:`Engine.events` reads history from the
store, then follows the hub.

The hub keeps only a bounded ring of the newest events and no per-reader queue, so a slow reader
never holds back the engine or anyone else: a reader that falls behind the ring reads the store
again (at its own pace) until it has caught up, with no gap and no duplicate.

Committed events travel as the store's rows (:data:`EventRow`: the payload already JSON), and
become :class:`~stockade.engine.models.Event` objects only when a reader first reads them (once,
however many readers): a batch of a thousand orders is then encoded once, for the store, and
never turned into dicts nobody asked for.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
import trio

from stockade.engine.models import Event
from stockade.engine.orders import from_timestamp
from stockade.errors import EngineClosed

__all__ = ["RING_SIZE", "EventRow", "FeedHub", "event_from_row"]

#: An event as the store keeps it: seq, type, at (UNIX seconds), sku (for product events),
#: data (the payload's JSON).
EventRow = tuple[int, str, float, str | None, str]

_data_decoder = msgspec.json.Decoder(dict[str, Any])


def event_from_row(row: EventRow | Any) -> Event:
    """The public event a store row (or a database record of the same columns) holds."""
    seq, kind, at, _, data = row
    return Event(seq, kind, from_timestamp(at), _data_decoder.decode(data))


#: Newest events the hub keeps for live readers (older ones are read from the store).
RING_SIZE = 10_000


class _Kept(msgspec.Struct, gc=False):
    """A row in the ring, and its event once a reader has asked for it. Never tracked by the
    collector (it holds a tuple of atoms and an untracked Event: no cycle can run through it):
    the ring's ten thousand of them would otherwise be walked by every full collection, which
    measured 1.2 µs an order on the durable path at 1,000 callers."""

    row: EventRow
    event: Event | None = None


class FeedHub:
    """The newest committed events, for live readers. ``publish`` is called by the journal
    after each commit, in seq order; it never blocks and never waits for a reader."""

    def __init__(self, head: int = 0, size: int | None = None) -> None:
        self.head = head  # the newest seq committed
        self._ring: deque[_Kept] = deque(maxlen=RING_SIZE if size is None else size)
        self._lot = trio.lowlevel.ParkingLot()
        self.closed = False

    def close(self) -> None:
        """The engine is closing: live readers waiting for events end with EngineClosed."""
        self.closed = True
        self._lot.unpark_all()

    def publish(self, events: list[EventRow]) -> None:
        if not events:
            return
        if events[0][0] != self.head + 1:
            # Events the hub never saw (a batch whose commit landed but went unheard, so its
            # retry yielded nothing): the ring holds consecutive events only, or ``since``
            # would skip the hole. Start it afresh; readers before it read the store.
            self._ring.clear()
        self._ring.extend(map(_Kept, events))
        self.head = events[-1][0]
        self._lot.unpark_all()

    def skip_to(self, head: int) -> None:
        """Events up to ``head`` were committed without passing through :meth:`publish` (a
        batch whose commit landed unheard): wake the readers, which read them from the
        store."""
        if head > self.head:
            self._ring.clear()
            self.head = head
            self._lot.unpark_all()

    def since(
        self, after: int, wanted: tuple[str, ...] | None = None
    ) -> tuple[list[Event], int] | None:
        """The events after ``after`` still in the ring, of the ``wanted`` types (None: all),
        and the last seq they cover (``after`` when there are none yet); or None when some of
        them have already left the ring (read the store). Events of other types are passed
        over without being decoded."""
        ring = self._ring
        if after >= self.head:
            return [], after
        if not ring or ring[0].row[0] > after + 1:
            return None
        out = []
        for i in range(after + 1 - ring[0].row[0], len(ring)):
            kept = ring[i]
            if wanted is not None and kept.row[1] not in wanted:
                continue
            event = kept.event
            if event is None:
                event = kept.event = event_from_row(kept.row)
            out.append(event)
        return out, self.head  # the ring ends at the head: publish keeps them together

    async def wait_beyond(self, seq: int) -> None:
        """Return once the head is past ``seq``. Cancellable. Raises EngineClosed once the
        engine closes (an open stream must not hold a shutdown up)."""
        while self.head <= seq:
            if self.closed:
                raise EngineClosed("the engine is shutting down")
            await self._lot.park()
