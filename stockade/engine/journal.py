"""What the engine needs from a journal; :mod:`stockade.persistence` provides implementations."""

from __future__ import annotations

from typing import Protocol

from stockade.engine.events import Event

__all__ = ["JournalSink"]


class JournalSink(Protocol):
    """The engine's view of the journal.

    ``append`` is synchronous and never refuses: what is appended is committed in order, in
    batches. ``admit`` is the back-pressure check made *before* new work changes anything: it
    raises Overloaded when the journal is full. A caller that appends right away (no await in
    between) uses ``admit``; one that appends after an await holds a place with ``reserve``
    and gives it back with ``release`` once it appended (or failed), so a burst of callers
    cannot all pass the check before any of them appends.

    ``wait_durable`` returns once every event up to ``seq`` is committed (at once in ``fast``
    durability); it may be cancelled, and the change is then still committed, only
    unacknowledged.
    """

    def admit(self) -> None: ...

    def reserve(self) -> None: ...

    def release(self) -> None: ...

    def is_durable(self, seq: int) -> bool:
        """True when a caller need not wait for ``seq`` (committed, or ``fast`` mode)."""
        ...

    def append(self, events: tuple[Event, ...]) -> int: ...

    async def wait_durable(self, seq: int) -> None: ...

    def statistics(self) -> dict[str, int | bool]: ...
