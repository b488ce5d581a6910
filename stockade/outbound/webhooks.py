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

A subscription with ``batch`` N > 1 (design.md §14) POSTs up to N events at once, in seq
order, as ``{"events": [...]}``: those already committed when the POST is made (it never waits
to fill a batch), signed as one message whose ``webhook-id`` is the seq of the *last* event it
carries. A 2xx delivers them all; a failure retries the whole POST. A batch resent after a
restart may be cut differently (a different ``webhook-id``): receivers dedupe by each event's
``seq``. ``batch`` 1 is the plain body, one event per POST.

Progress (cursor, failing, last error) is kept in memory and written to the store's webhooks
table at most every ``save_every_s`` and once more when :meth:`Webhooks.run` ends, so a restart
resumes from the cursor saved last: what was delivered after it is delivered again (same
``webhook-id``). Events pruned while a subscription was behind them (older than the engine's
``event_retention``) cannot be delivered: the subscription moves past them and says so in its
last error. What webhooks share with sinks: :mod:`stockade.outbound.deliveries`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal

import httpx
import msgspec
import trio

from stockade.engine.engine import Engine
from stockade.engine.models import Event
from stockade.engine.validation import check_location_id
from stockade.errors import InvalidRequest
from stockade.outbound.deliveries import Deliveries, Followed, RetryOptions, jittered
from stockade.outbound.pacing import Pacer, other_tasks_runnable
from stockade.outbound.signing import secret_key, sign
from stockade.persistence.webhooks import WebhookRecord, WebhookTable

__all__ = ["MAX_BATCH", "OUTCOMES", "DeliveryOptions", "Outcome", "Subscription", "Webhooks"]

#: What one attempt came to: a 2xx, another status, no answer in time, a connection failure.
Outcome = Literal["delivered", "refused", "timeout", "error"]
OUTCOMES: tuple[Outcome, ...] = ("delivered", "refused", "timeout", "error")
#: The most events one POST may carry.
MAX_BATCH = 1000
_encoder = msgspec.json.Encoder()


class _Batch(msgspec.Struct):
    events: list[Event]


class DeliveryOptions(RetryOptions, frozen=True, kw_only=True):
    """How webhooks are delivered (see the module docstring and RetryOptions); times in
    seconds."""

    timeout_s: float = 15.0
    max_in_flight: int = 64
    #: The share of the time deliveries may take while the process has other work (1: any).
    busy_share: float = 0.1


class Subscription(Followed[WebhookRecord]):
    """A webhook and where its deliveries stand (what ``GET /v1/webhooks/{id}`` shows)."""

    def __init__(self, record: WebhookRecord, key: bytes) -> None:
        super().__init__(record)
        self.key = key


class Webhooks(Deliveries[Subscription, WebhookRecord]):
    """The webhook subscriptions of a server, kept in ``table``, delivered from :meth:`run`
    (see :class:`~stockade.outbound.deliveries.Deliveries`)."""

    kind = "webhook"

    def __init__(
        self, engine: Engine, table: WebhookTable, options: DeliveryOptions | None = None, *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.options = options = options or DeliveryOptions()
        super().__init__(engine, table, options, wall_clock=wall_clock)
        self.outcomes: dict[Outcome, int] = dict.fromkeys(OUTCOMES, 0)
        self._client: httpx.AsyncClient | None = None
        self._in_flight = trio.CapacityLimiter(options.max_in_flight)
        self._pacer = Pacer(options.busy_share, self._busy)

    def _followed(self, record: WebhookRecord) -> Subscription:
        return Subscription(record, _key(record.secret))

    async def put(
        self, webhook_id: str, url: str, types: tuple[str, ...] | None, raw: str, batch: int = 1,
    ) -> tuple[Subscription, bool]:  # fmt: skip
        """Create or replace the subscription ``webhook_id`` (signed with the secret ``raw``;
        ``batch``: the most events one POST carries); return it and whether it is new. A new
        one delivers the events committed from now on; a replaced one keeps its cursor. Raises
        FeedGone when the engine keeps no change feed, InvalidRequest for a bad id or batch."""
        check_location_id(webhook_id, what="webhook id")
        if type(batch) is not int or not 1 <= batch <= MAX_BATCH:
            raise InvalidRequest(f"batch must be from 1 to {MAX_BATCH}")

        def record_for(old: Subscription | None, now: float) -> WebhookRecord:
            if old is None:
                cursor = self._new_cursor()
                return WebhookRecord(webhook_id, url, types, raw, cursor, now, now, batch=batch)
            return WebhookRecord(
                webhook_id, url, types, raw, old.cursor, old.record.created_at, now,
                old.failing, old.last_error, old.last_error_at, batch,
            )  # fmt: skip

        return await self._replace(webhook_id, record_for)

    def _busy(self) -> bool:
        """Whether the process has other work: tasks waiting to run, or changes waiting for
        their commit (a commit runs in another thread, and competes for the GIL)."""
        return other_tasks_runnable() or self.engine.statistics().journal.buffered > 0

    # -- delivering ---------------------------------------------------------------------------

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        options = self.options
        timeout = httpx.Timeout(options.timeout_s)
        limits = httpx.Limits(max_connections=options.max_in_flight,
                              max_keepalive_connections=options.max_in_flight)  # fmt: skip
        try:
            async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
                self._client = client
                yield
        finally:
            self._client = None

    def _batch(self, subscription: Subscription) -> int:
        return subscription.record.batch

    async def _deliver(self, subscription: Subscription, events: list[Event]) -> None:
        """POST ``events`` until they are delivered (see the module docstring). Cancellable."""
        options = self.options
        if subscription.record.batch == 1:
            (event,) = events
            body = _encoder.encode(event)
        else:
            body = _encoder.encode(_Batch(events))
        message_id = str(events[-1].seq)
        delay = options.backoff_s
        while True:
            outcome, error, retry_after = await self._attempt(subscription, message_id, body)
            self.outcomes[outcome] += 1
            if outcome == "delivered":
                self.attempt_succeeded(subscription)
                return
            assert error is not None
            self.attempt_failed(subscription, error)
            most = options.max_backoff_s
            wait = jittered(most if subscription.failing else delay, most)
            delay = min(delay * 2, most)
            if retry_after is not None:
                wait = max(wait, min(retry_after, most))
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
