"""A change-feed consumer for the durable bench: one webhook (delivered by the engine's own
process to a receiver in a process of its own, bench/webhook_receiver.py) or one broker sink
(NATS, Redis or RabbitMQ on this machine), and the lags seen.

* feed lag: events committed that the consumer has not had acknowledged yet (``head -
  cursor``, the ``stockade_feed_lag`` metric with one consumer), sampled every 10 ms while
  orders run;
* delivery lag: for each event, its first arrival at the receiver (a webhook), or the first
  sample (every 10 ms) at which the sink's cursor had passed it (the broker acknowledged it),
  minus its ``at`` (when the engine made the change, so commit latency is in it), over the
  whole run, including the time the consumer takes to catch up once the orders have stopped.

Brokers: ``STOCKADE_BENCH_NATS`` (``127.0.0.1:4222``), ``STOCKADE_BENCH_REDIS``
(``127.0.0.1:6379``), ``STOCKADE_BENCH_AMQP`` (``guest:guest@127.0.0.1:5672``); each run
publishes to a stream, key or exchange of its own and removes it afterwards.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

import stockade
from stockade._asyncio import AsyncioThread
from stockade.outbound.brokers import nats_stream_name
from stockade.outbound.deliveries import Followed
from stockade.outbound.service import Outbound
from stockade.persistence.journal import Store
from stockade.persistence.sinks import SinkStore
from stockade.persistence.webhooks import WebhookStore

__all__ = ["CONSUMERS", "FeedFigures", "FeedWatch", "watching"]

#: What a run can feed: a webhook, or a sink to one of the brokers.
CONSUMERS = ("webhook", "nats", "redis", "amqp")
_BROKERS = {
    "nats": os.environ.get("STOCKADE_BENCH_NATS", "127.0.0.1:4222"),
    "redis": os.environ.get("STOCKADE_BENCH_REDIS", "127.0.0.1:6379"),
    "amqp": os.environ.get("STOCKADE_BENCH_AMQP", "guest:guest@127.0.0.1:5672"),
}

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
    """The consumer of one run (a webhook with its ``receiver``, or a sink: ``receiver``
    None): :meth:`orders_done` when the load stops, then :meth:`drain`."""

    def __init__(
        self, engine: stockade.Engine, subscription: Followed[Any],
        receiver: ReceiverProcess | None,
    ) -> None:  # fmt: skip
        self.engine = engine
        self.subscription = subscription
        self.receiver = receiver
        self.lags: list[int] = []
        self.cursors: list[tuple[float, int]] = []  # (UNIX time, cursor) every 10 ms
        self.sampling = True

    async def sample(self) -> None:
        """Sample the lag while orders run, and the cursor until cancelled."""
        while True:
            cursor = self.subscription.cursor
            if self.sampling:
                self.lags.append((self.engine.feed_head or 0) - cursor)
            if not self.cursors or self.cursors[-1][1] != cursor:
                self.cursors.append((time.time(), cursor))
            await trio.sleep(0.01)

    def passed(self) -> dict[int, float]:
        """When the cursor was first seen past each seq (UNIX seconds)."""
        first: dict[int, float] = {}
        seen = 0
        for at, cursor in self.cursors:
            for seq in range(seen + 1, cursor + 1):
                first[seq] = at
            seen = max(seen, cursor)
        return first

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
        await trio.sleep(0.02)  # one more sample of the cursor
        receiver = self.receiver
        arrivals = (
            self.passed() if receiver is None else await trio.to_thread.run_sync(receiver.stop)
        )
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
async def watching(
    engine: stockade.Engine, store: Store, consumer: str = "webhook", batch: int = 1
) -> AsyncIterator[FeedWatch]:
    """One ``consumer`` (one of CONSUMERS; a webhook POSTs up to ``batch`` events at once)
    fed every event by the engine's process (its Outbound), until exit."""
    assert isinstance(store, WebhookStore) and isinstance(store, SinkStore)
    outbound = Outbound(engine, store.webhook_table(), store.sink_table())
    receiver = ReceiverProcess() if consumer == "webhook" else None
    name = f"stockade-bench-{secrets.token_hex(4)}"
    address = _BROKERS.get(consumer, "")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(outbound.run)
            followed: Followed[Any] | None
            if receiver is not None:
                port = await trio.to_thread.run_sync(receiver.port)
                secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
                url = f"http://127.0.0.1:{port}/hook"
                await outbound.put_webhook("bench", url, None, secret, batch)
                followed = await outbound.webhooks.get("bench")
            else:
                url = {
                    "nats": f"nats://{address}/{name.replace('-', '.')}",
                    "redis": f"redis://{address}/0?stream={name}",
                    "amqp": f"amqp://{address}/%2F?exchange={name}",
                }[consumer]
                await outbound.put_sink("bench", url, None)
                followed = await outbound.sinks.get("bench")
            assert followed is not None
            watch = FeedWatch(engine, followed, receiver)
            nursery.start_soon(watch.sample)
            yield watch
            watch.orders_done()
            nursery.cancel_scope.cancel()
    finally:
        if receiver is not None:
            receiver.stop()
        else:
            with trio.CancelScope(shield=True):
                await _remove(consumer, address, name)


async def _remove(consumer: str, address: str, name: str) -> None:
    """Remove what a run published (the NATS stream, the Redis key, the AMQP exchange)."""
    import aio_pika
    import nats
    import redis.asyncio

    async def remove() -> None:
        if consumer == "nats":
            nc = await nats.connect(f"nats://{address}")
            try:
                await nc.jetstream().delete_stream(nats_stream_name(name.replace("-", ".")))
            finally:
                await nc.close()
        elif consumer == "redis":
            host, port = address.rsplit(":", 1)
            client = redis.asyncio.Redis(host=host, port=int(port))
            try:
                await client.delete(name)
            finally:
                await client.aclose()
        else:
            connection = await aio_pika.connect(f"amqp://{address}/")
            try:
                await (await connection.channel()).exchange_delete(name)
            finally:
                await connection.close()

    aio = AsyncioThread("bench-cleanup")
    try:
        await aio.run(remove)
    except Exception as exc:  # a bench reports and goes on
        print(f"could not remove {consumer} {name}: {exc!r}")
    finally:
        aio.close()
