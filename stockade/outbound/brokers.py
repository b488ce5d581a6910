"""Publishing to the brokers, with each broker's own asyncio client (design.md §14). Every
coroutine here runs on the sinks' asyncio loop thread (:class:`~stockade._asyncio.
AsyncioThread`), called from trio by :mod:`stockade.outbound.sinks`; nothing here touches trio.

A :class:`Publisher` is opened, publishes batches, and is closed; after any failure the caller
closes it and opens a new one (no client reconnects by itself: a half-sent batch is never
followed by later messages on a new connection, which could put them ahead of it).
:meth:`Publisher.publish` sends every message of a batch before awaiting any acknowledgement,
then awaits them all together, and returns only once the broker acknowledged every one:

* NATS JetStream (nats-py): ``publish_async`` into the stream that captures the subject
  (one named ``STOCKADE_<subject>`` is created if none does), header ``Nats-Msg-Id`` = seq, so
  the stream drops a repeat (within its duplicate window, 2 minutes by default);
* Redis Streams (redis-py): one pipeline of ``XADD KEY SEQ-1 type TYPE event JSON``; Redis
  refuses an id not above the stream's last, which means the entry is there already;
* RabbitMQ (aiormq, aio-pika's AMQP layer): a durable topic exchange (declared), persistent
  messages, routing key = the event type, ``message_id`` = seq, publisher confirms.

Each failure raises what the client raised; the caller records it as the sink's last error
(with the password scrubbed). A client is imported when a publisher of its kind first opens, not
before: a server without sinks loads none of them (redis-py, for one, imports OpenTelemetry when
it is installed, which must stay off the order path unless tracing is asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol
from urllib.parse import quote

from stockade.outbound.sinkurl import SinkTarget

__all__ = [
    "AmqpPublisher",
    "Message",
    "NatsPublisher",
    "Publisher",
    "RedisPublisher",
    "nats_stream_name",
    "open_publisher",
]

#: One event to publish: its seq, its type and its JSON.
Message = tuple[int, str, bytes]


class Publisher(Protocol):
    """Publishes batches to one broker target over one connection (asyncio)."""

    async def open(self) -> None:
        """Connect, and make sure the stream or exchange exists."""
        ...

    async def publish(self, messages: list[Message]) -> None:
        """Publish ``messages`` in order; return once each one is acknowledged."""
        ...

    async def close(self) -> None:
        """Drop the connection. Never raises."""
        ...


def nats_stream_name(subject: str) -> str:
    """The name of the stream created for ``subject`` when none captures it."""
    return "STOCKADE_" + subject.replace(".", "_")


async def _ignore(*_: Any) -> None:
    """nats-py's callbacks: a failure shows up where it matters, as a publish that fails."""


class NatsPublisher:
    def __init__(self, target: SinkTarget, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._nc: Any = None
        self._js: Any = None

    async def open(self) -> None:
        import nats
        import nats.js.errors

        target = self.target
        options: dict[str, Any] = {
            "servers": [f"nats://{target.host}:{target.port}"],
            "connect_timeout": self.timeout_s,
            "allow_reconnect": False,
            "max_reconnect_attempts": 0,
            "error_cb": _ignore,
            "disconnected_cb": _ignore,
            "closed_cb": _ignore,
            "name": "stockade",
        }
        if target.user is not None:
            options["user"] = target.user
        if target.password is not None:
            options["password"] = target.password
        self._nc = await nats.connect(**options)
        self._js = self._nc.jetstream(timeout=self.timeout_s, publish_async_max_pending=2000)
        try:
            await self._js.find_stream_name_by_subject(target.name)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(name=nats_stream_name(target.name), subjects=[target.name])

    async def publish(self, messages: list[Message]) -> None:
        js, subject = self._js, self.target.name
        acks = [
            await js.publish_async(subject, body, headers={"Nats-Msg-Id": str(seq)})
            for seq, _, body in messages
        ]
        async with asyncio.timeout(self.timeout_s):
            await asyncio.gather(*acks)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()


#: What Redis answers an XADD whose id is not above the stream's last: the entry is there.
_ALREADY_THERE = "equal or smaller than the target stream top item"


class RedisPublisher:
    def __init__(self, target: SinkTarget, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._client: Any = None

    async def open(self) -> None:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        target = self.target
        self._client = redis.asyncio.Redis(
            host=target.host, port=target.port, db=target.database,
            username=target.user or None, password=target.password,
            socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        await self._client.ping()

    async def publish(self, messages: list[Message]) -> None:
        key = self.target.name
        async with self._client.pipeline(transaction=False) as pipe:
            for seq, kind, body in messages:
                pipe.xadd(key, {"type": kind, "event": body}, id=f"{seq}-1")
            answers = await pipe.execute(raise_on_error=False)
        for answer in answers:
            if isinstance(answer, Exception) and _ALREADY_THERE not in str(answer):
                raise answer

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


class AmqpPublisher:
    """RabbitMQ through aiormq, the AMQP client aio-pika is built on, used directly to publish:
    without aio-pika's message objects and with no wait for the socket's drain per message,
    a message costs about half the CPU (measured: ~115 against ~240 us)."""

    def __init__(self, target: SinkTarget, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._connection: Any = None
        self._channel: Any = None

    async def open(self) -> None:
        import aiormq

        target = self.target
        user = quote(target.user or "guest", safe="")
        password = quote(target.password or "guest", safe="")
        vhost = quote(target.vhost, safe="")
        url = f"amqp://{user}:{password}@{target.host}:{target.port}/{vhost}"
        async with asyncio.timeout(self.timeout_s):
            self._connection = await aiormq.connect(url)
            self._channel = await self._connection.channel(publisher_confirms=True)
            await self._channel.exchange_declare(
                exchange=target.name, exchange_type="topic", durable=True
            )

    async def publish(self, messages: list[Message]) -> None:
        from pamqp.commands import Basic

        channel, exchange = self._channel, self.target.name
        confirms = [
            channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=kind,
                wait=False,
                properties=Basic.Properties(
                    message_id=str(seq),
                    message_type=kind,
                    delivery_mode=2,
                    content_type="application/json",
                ),
            )
            for seq, kind, body in messages
        ]
        async with asyncio.timeout(self.timeout_s):
            # sent in order (the channel's lock is FIFO); a nack raises DeliveryError
            await asyncio.gather(*confirms)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def open_publisher(target: SinkTarget, timeout_s: float) -> Publisher:
    """A publisher for ``target`` (not opened yet)."""
    kinds: dict[str, type[NatsPublisher | RedisPublisher | AmqpPublisher]] = {
        "nats": NatsPublisher, "redis": RedisPublisher, "amqp": AmqpPublisher,
    }  # fmt: skip
    return kinds[target.scheme](target, timeout_s)
