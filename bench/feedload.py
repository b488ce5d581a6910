"""A change-feed consumer for the durable bench: one webhook, delivered by the engine's own
process to a receiver in a process of its own (bench/webhook_receiver.py), and the lags seen.

* feed lag: events committed that the webhook has not read yet (``head - cursor``, the
  ``stockade_feed_lag`` metric with one consumer), sampled every 10 ms while orders run;
* delivery lag: for each event, its first arrival at the receiver minus its ``at`` (when the
  engine made the change, so commit latency is in it), over the whole run, including the time
  the webhook takes to catch up once the orders have stopped.
"""

from __future__ import annotations

import base64
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

import stockade
from stockade.outbound.signing import secret_key
from stockade.outbound.webhooks import Subscription, Webhooks
from stockade.persistence.journal import Store
from stockade.persistence.webhooks import WebhookStore

__all__ = ["FeedFigures", "FeedWatch", "watching"]

#: How long the webhook may take to deliver its backlog once the orders stop.
CATCH_UP_S = 600.0


class FeedFigures:
    def __init__(
        self, lags: list[int], delays_s: list[float], events: int, catch_up_s: float
    ) -> None:
        lags.sort()
        delays_s.sort()
        self.feed_lag_p99 = lags[int(len(lags) * 0.99)] if lags else 0
        self.delivery_p50_ms = statistics.median(delays_s) * 1000 if delays_s else 0.0
        self.delivery_p99_ms = delays_s[int(len(delays_s) * 0.99)] * 1000 if delays_s else 0.0
        self.delivered = len(delays_s)
        self.events = events
        self.catch_up_s = catch_up_s


class FeedWatch:
    """The webhook of one run: :meth:`orders_done` when the load stops, then :meth:`drain`."""

    def __init__(
        self, engine: stockade.Engine, subscription: Subscription, receiver: ReceiverProcess
    ) -> None:
        self.engine = engine
        self.subscription = subscription
        self.receiver = receiver
        self.lags: list[int] = []
        self.sampling = True

    async def sample(self) -> None:
        while self.sampling:
            self.lags.append((self.engine.feed_head or 0) - self.subscription.cursor)
            await trio.sleep(0.01)

    def orders_done(self) -> None:
        self.sampling = False

    async def drain(self, first_seq: int) -> FeedFigures:
        """Wait for the webhook to deliver everything, then measure."""
        started = time.perf_counter()
        head = self.engine.feed_head or 0
        with trio.move_on_after(CATCH_UP_S):
            while self.subscription.cursor < head:  # noqa: ASYNC110 (a bench's poll)
                await trio.sleep(0.05)
        catch_up_s = time.perf_counter() - started
        arrivals = await trio.to_thread.run_sync(self.receiver.stop)
        delays: list[float] = []
        after = first_seq
        while True:
            page, after = await self.engine.event_page(after, 1000)
            if not page:
                break
            for event in page:
                arrived = arrivals.get(event.seq)
                if arrived is not None:
                    delays.append(arrived - event.at.timestamp())
        return FeedFigures(self.lags, delays, head - first_seq, catch_up_s)


class ReceiverProcess:
    """``python -m bench.webhook_receiver`` in a process of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stockade-receiver-"))
        self.port_file = self.dir / "port"
        self.out_file = self.dir / "received"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.webhook_receiver", str(self.port_file),
             str(self.out_file)],
        )  # fmt: skip

    def port(self) -> int:
        deadline = time.monotonic() + 30
        while not self.port_file.exists() or not self.port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.02)
        return int(self.port_file.read_text())

    def stop(self) -> dict[int, float]:
        """Stop it; each webhook-id's first arrival (UNIX seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        first: dict[int, float] = {}
        if self.out_file.exists():
            for line in self.out_file.read_text().splitlines():
                seq, at = line.split()
                first.setdefault(int(seq), float(at))
        return first


@asynccontextmanager
async def watching(engine: stockade.Engine, store: Store) -> AsyncIterator[FeedWatch]:
    """One webhook subscribed to all events, delivered until exit."""
    assert isinstance(store, WebhookStore)
    receiver = ReceiverProcess()
    try:
        port = await trio.to_thread.run_sync(receiver.port)
        hooks = Webhooks(engine, store.webhook_table())
        async with trio.open_nursery() as nursery:
            await nursery.start(hooks.run)
            secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
            subscription, _ = await hooks.put(
                "bench", f"http://127.0.0.1:{port}/hook", None, secret_key(secret), secret
            )
            watch = FeedWatch(engine, subscription, receiver)
            nursery.start_soon(watch.sample)
            yield watch
            watch.orders_done()
            nursery.cancel_scope.cancel()
    finally:
        receiver.stop()
