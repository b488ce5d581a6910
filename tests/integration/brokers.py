"""The real brokers the sink tests publish to, and what a consumer reads back from them.

Addresses come from the environment (defaults: this machine's services):
``STOCKADE_TEST_NATS`` (``127.0.0.1:4222``), ``STOCKADE_TEST_REDIS`` (``127.0.0.1:6379``),
``STOCKADE_TEST_AMQP`` (``guest:guest@127.0.0.1:5672``). A broker that does not answer skips
its tests, except under ``CI=true``, where it fails them. Each test uses names of its own
(:func:`unique`), and removes what it made.

The consumers are the brokers' asyncio clients, run on an :class:`~stockade._asyncio.
AsyncioThread` from trio, as the sinks run them.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import aio_pika
import nats
import nats.js.errors
import pytest
import redis.asyncio

from stockade._asyncio import AsyncioThread
from stockade.outbound.brokers import nats_stream_name

NATS = os.environ.get("STOCKADE_TEST_NATS", "127.0.0.1:4222")
REDIS = os.environ.get("STOCKADE_TEST_REDIS", "127.0.0.1:6379")
AMQP = os.environ.get("STOCKADE_TEST_AMQP", "guest:guest@127.0.0.1:5672")
KINDS = ("nats", "redis", "amqp")


def unique(prefix: str = "stockade-test") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition("@")[2].rpartition(":")
    return host, int(port)


def require(kind: str) -> None:
    """Skip (fail under CI=true) unless the broker ``kind`` accepts a connection."""
    address = {"nats": NATS, "redis": REDIS, "amqp": AMQP}[kind]
    try:
        socket.create_connection(host_port(address), timeout=2).close()
    except OSError as exc:
        reason = f"no {kind} broker at {address} ({exc}); set STOCKADE_TEST_{kind.upper()}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the {kind} broker is required under CI: {reason}")
        pytest.skip(reason)


class Target:
    """One test's destination on broker ``kind``: its sink URL (through ``address``, by
    default the broker's own) and a consumer that reads back what arrived."""

    def __init__(self, kind: str, aio: AsyncioThread, address: str | None = None) -> None:
        self.kind = kind
        self.aio = aio
        self.name = unique()
        self.subject = self.name.replace("-", ".")  # a NATS subject of its own
        self.queue = self.name  # the AMQP queue bound to the exchange, made by prepare()
        own = {"nats": NATS, "redis": REDIS, "amqp": AMQP}[kind]
        self.host, self.port = host_port(own)
        if address is not None:
            self.host, self.port = host_port(address)
        self.user = AMQP.rpartition("@")[0] if "@" in AMQP else "guest:guest"

    @property
    def url(self) -> str:
        where = f"{self.host}:{self.port}"
        if self.kind == "nats":
            return f"nats://{where}/{self.subject}"
        if self.kind == "redis":
            return f"redis://{where}/0?stream={self.name}"
        return f"amqp://{self.user}@{where}/%2F?exchange={self.name}"

    async def prepare(self) -> None:
        """For AMQP, declare the exchange and a queue bound to every routing key, so what is
        published from now on is kept for :meth:`messages`."""
        if self.kind == "amqp":
            await self.aio.run(self._amqp, "prepare")

    async def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """What arrived, in arrival order: each message's id and its event (JSON)."""
        read = {"nats": self._nats_messages, "redis": self._redis_messages}.get(self.kind)
        if read is not None:
            return await self.aio.run(read)
        return await self.aio.run(self._amqp, "read")

    async def clean(self) -> None:
        cleaners = {"nats": self._nats_clean, "redis": self._redis_clean}
        if self.kind in cleaners:
            await self.aio.run(cleaners[self.kind])
        else:
            await self.aio.run(self._amqp, "clean")

    # -- on the asyncio thread ------------------------------------------------------------

    async def _nats_messages(self) -> list[tuple[str, dict[str, Any]]]:
        nc = await nats.connect(f"nats://{NATS}")
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(nats_stream_name(self.subject))
            except nats.js.errors.NotFoundError:
                return []
            out = []
            name = nats_stream_name(self.subject)
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(name, seq)
                assert msg.headers is not None and msg.data is not None
                out.append((msg.headers["Nats-Msg-Id"], json.loads(msg.data)))
            return out
        finally:
            await nc.close()

    async def _nats_clean(self) -> None:
        nc = await nats.connect(f"nats://{NATS}")
        try:
            with suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(nats_stream_name(self.subject))
        finally:
            await nc.close()

    def _redis(self) -> redis.asyncio.Redis:
        host, port = host_port(REDIS)
        return redis.asyncio.Redis(host=host, port=port, db=0)

    async def _redis_messages(self) -> list[tuple[str, dict[str, Any]]]:
        client = self._redis()
        try:
            entries: Any = await client.xrange(self.name)
            return [(i.decode(), json.loads(fields[b"event"])) for i, fields in entries]
        finally:
            await client.aclose()

    async def _redis_clean(self) -> None:
        client = self._redis()
        try:
            await client.delete(self.name)
        finally:
            await client.aclose()

    async def _amqp(self, what: str) -> Any:
        connection = await aio_pika.connect(f"amqp://{AMQP}/")
        try:
            channel = await connection.channel()
            if what == "prepare":
                exchange = await channel.declare_exchange(
                    self.name, aio_pika.ExchangeType.TOPIC, durable=True
                )
                queue = await channel.declare_queue(self.queue, durable=False)
                await queue.bind(exchange, "#")
                return None
            if what == "clean":
                await channel.queue_delete(self.queue)
                await channel.exchange_delete(self.name)
                return None
            queue = await channel.declare_queue(self.queue, passive=True)
            out = []
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                out.append((message.message_id or "", json.loads(message.body)))
            return out
        finally:
            await connection.close()


@asynccontextmanager
async def asyncio_thread() -> AsyncIterator[AsyncioThread]:
    aio = AsyncioThread("test-consumers")
    try:
        yield aio
    finally:
        aio.close()
