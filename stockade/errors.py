"""The exceptions stockade raises.

Every error stockade raises on purpose is a :class:`StockadeError`, and each one says exactly
when it is raised::

    StockadeError
    ├── OutOfStock            (an order line asks for more than is available; carries shortages)
    ├── UnknownProduct        (a sku that has never been given stock)
    ├── UnknownLocation       (a location id that was never created)
    ├── UnknownChannel        (a sales channel id that was never created)
    ├── OrderNotFound         (an order id the engine does not know)
    ├── InvalidTransition     (confirming a cancelled or expired order; extending past the cap)
    ├── InvalidRequest        (bad input: sku syntax, qty, lines, stock levels; also a ValueError)
    │   ├── StockConflict     (a stock change the product's current stock refuses)
    │   └── ReturnConflict    (a return of units the order has not bought, or has returned)
    ├── IdempotencyConflict   (a reused idempotency key with different lines)
    ├── LimitExceeded         (an order over a product's per_order or per_customer limit)
    ├── NotOnSale             (an order for a product outside its sale window)
    ├── Overloaded            (a mailbox or the journal is full: retry later)
    ├── TooManyHolds          (a holder, e.g. a client address, has its most open holds)
    ├── EngineClosed          (the engine is shutting down or has shut down)
    ├── FeedGone              (a change-feed position before retention or beyond the head)
    ├── EngineUnavailable     (a remote engine cannot be reached, dropped a call or timed out)
    ├── EngineRefused         (a remote engine refused this client: wrong secret or version)
    └── StoreError            (the store, not the call, is at fault)
        ├── StoreInUse        (another process owns the store)
        ├── StoreUnavailable  (the database cannot be reached right now; the journal retries)
        ├── StoreLost         (another instance took the store over: this one stops writing)
        ├── CorruptStore      (the store contradicts itself or the journal)
        └── IncompatibleStore (the database was written by a newer stockade)

An error that refuses a call (everything but ``StoreError``) changes nothing. A ``StoreError``
comes from ``open_engine`` (loading the store) or stops a running engine (a commit it cannot
retry); the engine's calls never raise one. Foreign exceptions (sqlite3, asyncpg) are
translated at the store boundary (``raise ... from exc``) and never escape through the
engine's API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

__all__ = [
    "CorruptStore",
    "EngineClosed",
    "EngineRefused",
    "EngineUnavailable",
    "FeedGone",
    "IdempotencyConflict",
    "IncompatibleStore",
    "InvalidRequest",
    "InvalidTransition",
    "LimitExceeded",
    "NotOnSale",
    "OrderNotFound",
    "OutOfStock",
    "Overloaded",
    "ReturnConflict",
    "StockadeError",
    "StockConflict",
    "StoreError",
    "StoreInUse",
    "StoreLost",
    "StoreUnavailable",
    "TooManyHolds",
    "UnknownChannel",
    "UnknownLocation",
    "UnknownProduct",
]


class StockadeError(Exception):
    """Base class of every error stockade raises on purpose."""


class OutOfStock(StockadeError):
    """Raised by ``place_order`` when at least one line asks for more than is available.

    Nothing is taken: lines already reserved for the order are given back before this is raised.
    ``shortages`` maps each short sku to ``(requested, available)`` at the moment it was refused.
    """

    def __init__(self, shortages: Mapping[str, tuple[int, int]]) -> None:
        self.shortages: dict[str, tuple[int, int]] = dict(shortages)
        detail = ", ".join(
            f"{sku}: requested {want}, available {have}"
            for sku, (want, have) in sorted(self.shortages.items())
        )
        super().__init__(f"out of stock ({detail})")


class UnknownProduct(StockadeError):
    """Raised when a sku is well formed but has never been given stock with ``set_stock``."""

    def __init__(self, sku: str) -> None:
        self.sku = sku
        super().__init__(f"unknown product {sku!r}")


class UnknownLocation(StockadeError):
    """Raised when a location id is well formed but no location of that id was created with
    ``set_location`` (the location ``default`` always exists)."""

    def __init__(self, location: str) -> None:
        self.location = location
        super().__init__(f"unknown location {location!r}")


class UnknownChannel(StockadeError):
    """Raised when a channel id is well formed but no channel of that id was created with
    ``set_channel``."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        super().__init__(f"unknown channel {channel!r}")


class OrderNotFound(StockadeError):
    """Raised when an order id is not known to the engine."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id!r} not found")


class InvalidTransition(StockadeError):
    """Raised when an order cannot make the requested move: confirming an order that was
    cancelled or whose hold expired (including a confirm arriving after ``expires_at`` before
    the expiry timer ran); changing or extending an order that is not reserved; extending a
    hold already at its maximum lifetime (``why`` says so). Repeating a move that already
    happened is not an error."""

    def __init__(self, order_id: str, status: str, action: str, why: str | None = None) -> None:
        self.order_id = order_id
        self.status = status
        self.action = action
        self.why = why
        super().__init__(f"cannot {action} order {order_id!r}: {why or f'it is {status}'}")


class InvalidRequest(StockadeError, ValueError):
    """Raised for input that can never succeed as given: a malformed sku, a quantity below 1 or
    above the limit, an empty order, too many or duplicate lines, a negative stock level, a
    ``set_stock``/``adjust_stock`` that would put on-hand below what is reserved, a bad hold
    time or idempotency key, an unsupported database URL or engine option; and for an object
    used out of turn (an ``EngineThread`` started twice, a store committed to before it was
    loaded). It is also a ``ValueError``, so code that catches bad values keeps working. Its
    subclass :class:`StockConflict` is raised for a stock change the product's current stock
    refuses."""


class StockConflict(InvalidRequest):
    """Raised by ``set_stock`` or ``adjust_stock`` when the change is well formed but the
    product's stock right now refuses it: on-hand would fall below what open holds reserve (or
    below zero), or rise above the largest stock allowed. The same call may succeed once the
    stock has moved (HTTP answers 409, not 422)."""


class ReturnConflict(InvalidRequest):
    """Raised by ``return_units`` for a return the order cannot take as it is now: a line for
    a sku the order did not buy, or more units than it bought and has not returned yet. The
    request is well formed; the order refuses it (HTTP answers 409 ``return-conflict``, not
    422). Nothing changes."""


class IdempotencyConflict(StockadeError):
    """Raised when an idempotency key already names an order with different lines."""

    def __init__(self, key: str, order_id: str) -> None:
        self.key = key
        self.order_id = order_id
        super().__init__(f"idempotency key {key!r} was already used for other lines")


class LimitExceeded(StockadeError):
    """Raised by ``place_order`` and ``change_order`` (and a late ``confirm``) when a line asks
    for more units of a product than its rules allow (see ``Engine.set_rules``): more than
    ``per_order`` in one order, or more than ``per_customer`` for one customer (units the
    customer holds and has bought of it since the rule was set, this order included).

    Also raised for an order that names no ``customer`` and takes a product with a
    ``per_customer`` rule (there is no one to count it against): that line's rule is
    ``"customer"``. It is a 409, not a 422, because the same order is fine for a product
    without the rule: the refusal depends on the product's rules now, not on the request.

    Nothing is taken. ``limits`` maps each refused sku to ``(rule, limit, counted,
    requested)``: ``rule`` is ``"per_order"``, ``"per_customer"`` or ``"customer"``,
    ``counted`` the units already counted against it (the order's units before a cart edit,
    or the customer's), and ``requested`` the units this call asked for on top of them.
    """

    def __init__(self, limits: Mapping[str, tuple[str, int, int, int]]) -> None:
        self.limits: dict[str, tuple[str, int, int, int]] = dict(limits)
        detail = ", ".join(
            f"{sku}: {rule} limit {limit}, counted {counted}, requested {requested}"
            for sku, (rule, limit, counted, requested) in sorted(self.limits.items())
        )
        super().__init__(f"limit exceeded ({detail})")


class NotOnSale(StockadeError):
    """Raised by ``place_order`` and ``change_order`` when a line takes units of a product
    outside its sale window: before its ``opens_at`` or from its ``closes_at`` on (by the
    engine's clock). Nothing is taken. ``sku``, ``opens_at`` and ``closes_at`` (aware
    datetimes or None) say which product and what its window is."""

    def __init__(self, sku: str, opens_at: datetime | None, closes_at: datetime | None) -> None:
        self.sku = sku
        self.opens_at = opens_at
        self.closes_at = closes_at
        window = (
            f"opens {opens_at.isoformat() if opens_at else 'any time'}, "
            f"closes {closes_at.isoformat() if closes_at else 'never'}"
        )
        super().__init__(f"{sku!r} is not on sale now ({window})")


class Overloaded(StockadeError):
    """Raised instead of queueing without bound: a product's mailbox or the journal buffer is
    full (for example while the database is down). Nothing was changed; retry later."""


class TooManyHolds(StockadeError):
    """Raised by ``place_order`` given a ``holder`` (anonymous holds under ``serve
    --public-holds`` are counted per client address) that already has ``limit`` open holds,
    counting those being placed. Nothing was taken. ``retry_after_s`` is how long until the
    holder's earliest hold lapses (a cancel or a confirm frees one sooner)."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"this client already has {limit} open hold(s), the most it may have: confirm, "
            f"cancel or let one lapse (the first lapses in {retry_after_s:.0f} s)"
        )


class EngineClosed(StockadeError):
    """Raised for calls made while the engine is shutting down or after it has shut down."""


class FeedGone(StockadeError):
    """Raised by ``events`` and ``event_page`` for a position the change feed cannot serve:
    events after ``after`` were pruned (older than ``event_retention``), ``after`` is beyond
    the newest event (a cursor from another store), or the store keeps no feed at all.
    ``first`` and ``last`` are the oldest and newest seq still kept (0 when unknown)."""

    def __init__(self, detail: str, first: int = 0, last: int = 0) -> None:
        self.first = first
        self.last = last
        super().__init__(detail)


class EngineUnavailable(StockadeError):
    """Raised by a remote engine's calls (:func:`stockade.open_remote_engine`) when the engine
    cannot be reached (no address answers, or it is reconnecting), when the connection dropped
    with the call in flight (its outcome is unknown: retry with the same idempotency key), or
    when the call timed out (an engine paused or overloaded past the call's timeout); and by
    ``open_remote_engine`` when no address answers in time. Retrying later may succeed."""


class EngineRefused(StockadeError):
    """Raised by :func:`stockade.open_remote_engine` (and the calls of a client whose engine
    went on refusing it) when an engine answered but refused this client: its
    ``STOCKADE_ENGINE_SECRET`` differs, one side has a secret and the other has none, or the
    two speak different protocol versions. Retrying does not help: fix the configuration."""


class StoreError(StockadeError):
    """Base class of the errors that are about the store (the database behind the engine)
    rather than about a call. Raised by ``open_engine`` while it loads the store, or by a
    store's ``commit``, where anything but :class:`StoreUnavailable` stops the journal and so
    the engine. The engine's own calls never raise one."""


class StoreInUse(StoreError):
    """Raised by ``open_engine`` when another process already owns the store (holds the SQLite
    file's lock). Two processes must never sell the same stock."""


class StoreUnavailable(StoreError):
    """Raised by a store's ``load`` or ``commit`` when the database cannot be reached right
    now: a refused or dropped connection, a server shutting down, SQLite busy, a full disk or
    an I/O error. The journal retries a commit that raised it, with backoff, for as long as it
    takes (``readyz`` is false meanwhile); ``open_engine`` raises it when the store cannot be
    reached at start-up."""


class StoreLost(StoreError):
    """Raised by the PostgreSQL store's ``commit`` when another instance has taken the store
    over (its session holds the advisory lock, or the owner epoch has moved on). Nothing of the
    batch is written; the journal stops, and the engine with it, rather than write as a stale
    owner."""


class CorruptStore(StoreError):
    """Raised when the store contradicts itself or the journal, instead of guessing: by
    ``open_engine`` when a product's reserved units differ from its open holds, or are outside
    ``0..on_hand``, when an open hold names an unknown product or has no deadline, or when the
    database file is not a database; by a store's ``commit`` when a batch does not follow the
    last one committed (a gap in the sequence numbers), moves an order the store does not
    hold, or would break an invariant (``0 <= reserved <= on_hand``). Nothing of the batch is
    written."""


class IncompatibleStore(StoreError):
    """Raised by ``open_engine`` when the database has a schema version newer than this
    stockade (a later stockade wrote it). Nothing is changed: upgrade stockade to open it. The
    read-only readers (``stockade check``, ``stockade export``) raise it too for a database
    older than they read, which the first ``open_engine`` on it upgrades."""
