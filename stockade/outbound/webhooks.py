"""Webhook delivery: each subscription's events POSTed in seq order, signed, retried until one
is answered with a 2xx (at least once).

One task per subscription reads the change feed from its cursor with ``engine.events`` (history
from the store, then live; a task that falls behind reads the store at its own pace), and
delivers each event of the types it wants, one at a time, before the next: a receiver sees its
events in seq order, and a retried one again with the same ``webhook-id``. A slow or dead
receiver holds back only its own subscription: it never delays another one, nor the engine
(the feed keeps no queue per reader). ``max_in_flight`` bounds the requests in flight overall,
and while the process is busy (orders arriving) deliveries take at most ``busy_share`` of its
time (see :class:`~stockade.outbound.pacing.Pacer`): each costs the CPU of several orders.

A delivery is a POST of the event's JSON (``{"seq", "type", "at", "data"}``, as
``GET /v1/events`` shows it) with the Standard Webhooks headers (see
:mod:`stockade.outbound.signing`). A 2xx answer is a delivery. Anything else fails the
attempt: another status (3xx included: redirects are not followed), no answer within
``timeout_s``, a connection refused or closed. The attempt is retried after ``backoff_s``,
doubling up to ``max_backoff_s``, each wait drawn between half and one and a half times that
(jitter), and at least the receiver's ``Retry-After`` (up to ``max_backoff_s``). A
subscription whose event is still not delivered ``retry_budget_s`` after its first failure is
marked *failing*: its cursor stays, nothing is skipped, and it keeps trying at the maximum
backoff until a delivery succeeds.

Progress (cursor, failing, last error) is kept in memory and written to the store's webhooks
table at most every ``save_every_s`` and once more when :meth:`Webhooks.run` ends, so a restart
resumes from the cursor saved last: what was delivered after it is delivered again (same
``webhook-id``). Events pruned while a subscription was behind them (older than the engine's
``event_retention``) cannot be delivered: the subscription moves past them and says so in its
last error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Literal

import httpx
import msgspec
import trio

from stockade.api.logs import log_event
from stockade.engine.engine import Engine
from stockade.engine.models import Event
from stockade.engine.validation import check_location_id
from stockade.errors import EngineClosed, FeedGone, InvalidRequest, StoreUnavailable
from stockade.outbound.pacing import Pacer, other_tasks_runnable
from stockade.outbound.signing import secret_key, sign
from stockade.persistence.webhooks import WebhookProgress, WebhookRecord, WebhookTable

__all__ = ["OUTCOMES", "DeliveryOptions", "Outcome", "Subscription", "Webhooks"]

#: What an attempt came to.
Outcome = Literal["delivered", "refused", "timeout", "error"]
#: What an attempt can come to: a 2xx, another status, no answer in time, a connection failure.
OUTCOMES: tuple[Outcome, ...] = ("delivered", "refused", "timeout", "error")
_encoder = msgspec.json.Encoder()


class DeliveryOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How webhooks are delivered (see the module docstring); times in seconds."""

    timeout_s: float = 15.0
    backoff_s: float = 1.0
    max_backoff_s: float = 600.0
    retry_budget_s: float = 3600.0
    max_in_flight: int = 64
    save_every_s: float = 1.0
    #: How long the last save may take when delivery stops (a database that is down).
    final_save_s: float = 5.0
    #: The share of the time deliveries may take while the process has other work (1: any).
    busy_share: float = 0.1


class Subscription:
    """A webhook and where its deliveries stand (what ``GET /v1/webhooks/{id}`` shows)."""

    def __init__(self, record: WebhookRecord, key: bytes) -> None:
        self.record = record
        self.key = key
        self.types = None if record.types is None else frozenset(record.types)
        self.cursor = record.delivered_seq  # every wanted event up to it was delivered
        self.failing = record.failing
        self.last_error = record.last_error
        self.last_error_at = record.last_error_at
        self.dirty = False  # progress not saved yet
        self.scope = trio.CancelScope()

    def progress(self) -> WebhookProgress:
        return WebhookProgress(self.record.id, self.cursor, self.failing, self.last_error,
                               self.last_error_at)  # fmt: skip

    def failed(self, error: str, at: float) -> None:
        self.last_error = error
        self.last_error_at = at
        self.dirty = True


class Webhooks:
    """The subscriptions of a server, kept in ``table``, delivered from :meth:`run`.

    The methods that change subscriptions take a lock, read the table on first use, and may
    raise StoreUnavailable (the table cannot be written now: nothing changed) or
    InvalidRequest. They work whether or not :meth:`run` runs; deliveries happen only while it
    does."""

    def __init__(
        self, engine: Engine, table: WebhookTable, options: DeliveryOptions | None = None, *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.table = table
        self.options = options = options or DeliveryOptions()
        self.wall_clock = wall_clock
        self.outcomes: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._subscriptions: dict[str, Subscription] = {}
        self._loaded = False
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None
        self._in_flight = trio.CapacityLimiter(options.max_in_flight)
        self._pacer = Pacer(options.busy_share, self._busy)

    # -- the API's side -----------------------------------------------------------------------

    async def _load(self) -> None:
        if not self._loaded:
            for record in await self.table.webhooks():
                self._subscriptions[record.id] = Subscription(record, _key(record.secret))
            self._loaded = True

    async def put(
        self, webhook_id: str, url: str, types: tuple[str, ...] | None, secret: bytes, raw: str
    ) -> tuple[Subscription, bool]:
        """Create or replace the subscription ``webhook_id`` (``secret`` is the key ``raw``
        stands for); return it and whether it is new. A new one delivers the events committed
        from now on; a replaced one keeps its cursor. Raises FeedGone when the engine keeps no
        change feed."""
        check_location_id(webhook_id, what="webhook id")
        async with self._lock:
            await self._load()
            now = self.wall_clock()
            old = self._subscriptions.get(webhook_id)
            if old is None:
                head = self.engine.feed_head
                if head is None:
                    raise FeedGone("this server keeps no change feed to deliver")
                record = WebhookRecord(webhook_id, url, types, raw, head, now, now)
            else:
                record = WebhookRecord(
                    webhook_id, url, types, raw, old.cursor, old.record.created_at, now,
                    old.failing, old.last_error, old.last_error_at,
                )  # fmt: skip
            await self.table.put(record)
            if old is not None:
                old.scope.cancel()  # an attempt in flight is cut short: it is sent again
            subscription = self._subscriptions[webhook_id] = Subscription(record, secret)
            self._start(subscription)
        return subscription, old is None

    async def get(self, webhook_id: str) -> Subscription | None:
        async with self._lock:
            await self._load()
            return self._subscriptions.get(webhook_id)

    async def all(self) -> list[Subscription]:
        """Every subscription, in id order."""
        async with self._lock:
            await self._load()
            return [self._subscriptions[key] for key in sorted(self._subscriptions)]

    async def delete(self, webhook_id: str) -> Subscription | None:
        """Remove the subscription and stop its deliveries; None if there is none."""
        async with self._lock:
            await self._load()
            subscription = self._subscriptions.get(webhook_id)
            if subscription is None:
                return None
            await self.table.delete(webhook_id)
            del self._subscriptions[webhook_id]
            subscription.scope.cancel()
            return subscription

    def _busy(self) -> bool:
        """Whether the process has other work: tasks waiting to run, or changes waiting for
        their commit (a commit runs in another thread, and competes for the GIL)."""
        return other_tasks_runnable() or self.engine.statistics().journal.buffered > 0

    def subscriptions(self) -> list[Subscription]:
        """The subscriptions read so far, without waiting for the table. Never blocks."""
        return list(self._subscriptions.values())

    def backlogs(self) -> dict[str, int]:
        """Each subscription's backlog: the events committed after its cursor."""
        head = self.engine.feed_head or 0
        return {k: max(head - s.cursor, 0) for k, s in self._subscriptions.items()}

    # -- delivering ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver every subscription's events until cancelled, saving progress every
        ``save_every_s``; then save it once more (for at most ``final_save_s``). The table is
        read before ``task_status.started()``: errors reading it propagate."""
        options = self.options
        timeout = httpx.Timeout(options.timeout_s)
        limits = httpx.Limits(max_connections=options.max_in_flight,
                              max_keepalive_connections=options.max_in_flight)  # fmt: skip
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, limits=limits) as client,
                trio.open_nursery() as nursery,
            ):
                self._client = client
                async with self._lock:
                    await self._load()
                    self._nursery = nursery
                    for subscription in self._subscriptions.values():
                        self._start(subscription)
                nursery.start_soon(self._save_every)
                task_status.started()
        finally:
            self._nursery = self._client = None
            with trio.move_on_after(options.final_save_s, shield=True):
                await self.save()

    def _start(self, subscription: Subscription) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._follow, subscription)

    async def _save_every(self) -> None:
        while True:
            await trio.sleep(self.options.save_every_s)
            await self.save()

    async def save(self) -> None:
        """Write the progress not saved yet, in one transaction. A store that cannot be
        reached keeps it for the next save. Cancellable (it is then saved next time)."""
        dirty = [s for s in self._subscriptions.values() if s.dirty]
        if not dirty:
            await trio.lowlevel.checkpoint()
            return
        for subscription in dirty:
            subscription.dirty = False
        try:
            await self.table.save_progress([s.progress() for s in dirty])
        except BaseException as exc:
            for subscription in dirty:
                subscription.dirty = True
            if not isinstance(exc, StoreUnavailable):
                raise
            log_event("webhook_progress_not_saved", error=str(exc))

    async def _follow(self, subscription: Subscription) -> None:
        """Deliver ``subscription``'s events from its cursor until it is replaced or deleted
        (its scope is cancelled), delivery stops, or the engine closes."""
        delay = self.options.backoff_s
        with subscription.scope:
            while True:
                try:
                    async for event in self.engine.events(subscription.cursor):
                        if subscription.types is None or event.type in subscription.types:
                            await self._deliver(subscription, event)
                        subscription.cursor = event.seq
                        subscription.dirty = True
                        delay = self.options.backoff_s
                except EngineClosed:
                    return
                except (FeedGone, StoreUnavailable) as exc:
                    if isinstance(exc, FeedGone) and exc.first > subscription.cursor + 1:
                        error = f"events {subscription.cursor + 1}..{exc.first - 1} were pruned "
                        error += "before they could be delivered"
                        log_event("webhook_events_pruned", webhook=subscription.record.id,
                                  first=subscription.cursor + 1, last=exc.first - 1)  # fmt: skip
                        subscription.cursor = exc.first - 1
                        subscription.failed(error, self.wall_clock())
                        continue
                    subscription.failed(str(exc), self.wall_clock())
                    await trio.sleep(self._jittered(delay))
                    delay = min(delay * 2, self.options.max_backoff_s)

    def _jittered(self, delay: float) -> float:
        return min(delay, self.options.max_backoff_s) * random.uniform(0.5, 1.5)

    async def _deliver(self, subscription: Subscription, event: Event) -> None:
        """POST ``event`` until it is delivered (see the module docstring). Cancellable."""
        options = self.options
        body = _encoder.encode(event)
        message_id = str(event.seq)
        delay = options.backoff_s
        first_failure: float | None = None
        while True:
            outcome, error, retry_after = await self._attempt(subscription, message_id, body)
            self.outcomes[outcome] += 1
            if outcome == "delivered":
                if subscription.failing:
                    subscription.failing = False
                    subscription.dirty = True
                    log_event("webhook_recovered", webhook=subscription.record.id)
                return
            assert error is not None
            subscription.failed(error, self.wall_clock())
            now = trio.current_time()
            first_failure = now if first_failure is None else first_failure
            if not subscription.failing and now - first_failure >= options.retry_budget_s:
                subscription.failing = True
                log_event("webhook_failing", webhook=subscription.record.id, seq=event.seq,
                          error=error)  # fmt: skip
            wait = self._jittered(options.max_backoff_s if subscription.failing else delay)
            delay = min(delay * 2, options.max_backoff_s)
            if retry_after is not None:
                wait = max(wait, min(retry_after, options.max_backoff_s))
            await trio.sleep(wait)

    async def _attempt(
        self, subscription: Subscription, message_id: str, body: bytes
    ) -> tuple[Outcome, str | None, float | None]:
        """One POST: its outcome, the error to show, and the answer's Retry-After (seconds)."""
        client = self._client
        assert client is not None, "deliveries run only inside run()"
        timestamp = str(int(self.wall_clock()))
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": sign(subscription.key, message_id, timestamp, body),
        }
        timeout_s = self.options.timeout_s
        status = 0
        retry_after = None
        idle = await self._pacer.turn()
        started = trio.current_time()
        async with self._in_flight:
            try:
                with trio.fail_after(timeout_s):
                    async with client.stream(
                        "POST", subscription.record.url, content=body, headers=headers
                    ) as answer:
                        status = answer.status_code
                        retry_after = answer.headers.get("retry-after")
                        async for _ in answer.aiter_raw():
                            pass  # read to its end (and dropped): the connection is reused
            except (trio.TooSlowError, httpx.TimeoutException):
                if not status:  # (an answer whose body never ends counts as its status)
                    return "timeout", f"no answer within {timeout_s:g} s", None
            except httpx.HTTPError as exc:
                return "error", f"{type(exc).__name__}: {exc}".rstrip(": "), None
            finally:
                self._pacer.spent(started, trio.current_time(), idle)
        if 200 <= status < 300:
            return "delivered", None, None
        return "refused", f"answered {status}", _retry_after(retry_after)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (a date is not honoured)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _key(secret: str) -> bytes:
    """The HMAC key of a stored secret: one not in the ``whsec_`` form (written into the
    database by hand; the API accepts no such secret) is used as its bytes."""
    try:
        return secret_key(secret)
    except InvalidRequest:
        return secret.encode()
