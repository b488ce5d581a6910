"""What the engine needs from a journal; :mod:`stockade.persistence` provides implementations."""

from __future__ import annotations

from typing import Protocol

from stockade.engine.events import Event
from stockade.engine.models import JournalStatistics

__all__ = ["JournalSink"]


class JournalSink(Protocol):
    """The engine's view of the journal.

    ``append`` is synchronous and never refuses: what is appended is committed in order, in
    batches. ``admit`` is the back-pressure check made *before* new work changes anything: it
    raises Overloaded when the journal is full. A caller that appends right away (no await in
    between) uses ``admit``; one that appends after an await claims a slot in the journal with
    ``claim_slot`` (which admits first) and frees it with ``free_slot`` once it appended (or
    failed), so a burst of callers cannot all pass the check before any of them appends.
    (A slot is a place in the journal's buffer, nothing to do with stock reserved by holds.)

    ``wait_durable`` returns once every event up to ``seq`` is committed (at once in ``fast``
    durability); it may be cancelled, and the change is then still committed, only
    unacknowledged.
    """

    def admit(self) -> None: ...

    def claim_slot(self) -> None: ...

    def free_slot(self) -> None: ...

    def is_durable(self, seq: int) -> bool:
        """True when a caller need not wait for ``seq`` (committed, or ``fast`` mode)."""
        ...

    def append(self, events: tuple[Event, ...]) -> int: ...

    async def wait_durable(self, seq: int) -> None: ...

    def statistics(self) -> JournalStatistics: ...
