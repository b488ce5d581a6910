"""Frames on a stream, and the engine's side of a connection facing bad peers: garbage,
truncated, oversized and unauthenticated frames drop that connection only; limits; calls
whose caller gave up; a graceful stop."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import stockade
from stockade import Engine
from stockade.protocol import calls as c
from stockade.protocol.auth import client_handshake
from stockade.protocol.frames import (
    Failure,
    FrameStream,
    Ping,
    Pong,
    ProtocolError,
    Request,
    ResultIn,
    encode,
)
from stockade.protocol.server import serve_connection
from tests.unit.test_protocol_link import linked

_replies = msgspec.msgpack.Decoder(ResultIn | Failure | Pong)


@given(
    bodies=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
)
def test_frames_come_out_whole_however_the_bytes_are_cut(bodies: list[bytes], cuts: list[int]):
    wire = b"".join(len(body).to_bytes(4, "big") + body for body in bodies)

    async def main() -> list[bytes]:
        send, receive = trio.testing.memory_stream_one_way_pair()
        frames = FrameStream(trio.StapledStream(send, receive))
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def feed() -> None:
                at, n = 0, 0
                while at < len(wire):
                    step = cuts[n % len(cuts)]
                    await send.send_all(wire[at : at + step])
                    at, n = at + step, n + 1
                await send.aclose()

            nursery.start_soon(feed)
            while (body := await frames.receive()) is not None:
                got.append(body)
        return got

    assert trio.run(main) == bodies


async def test_a_stream_ending_inside_a_frame_or_a_frame_too_large_is_a_protocol_error():
    send, receive = trio.testing.memory_stream_one_way_pair()
    frames = FrameStream(trio.StapledStream(send, receive), max_frame=100)
    await send.send_all((10).to_bytes(4, "big") + b"abc")
    await send.aclose()
    with pytest.raises(ProtocolError, match="inside a frame"):
        await frames.receive()
    send, receive = trio.testing.memory_stream_one_way_pair()
    frames = FrameStream(trio.StapledStream(send, receive), max_frame=100)
    await send.send_all((101).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="above the limit"):
        await frames.receive()


async def _served(engine: Engine, nursery: trio.Nursery, **options: Any) -> FrameStream:
    """A raw client connection to ``serve_connection``, past the handshake."""
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(lambda: serve_connection(server, engine, **options))
    frames = FrameStream(client)
    await client_handshake(frames, None)
    return frames


async def _reply(frames: FrameStream) -> Any:
    body = await frames.receive()
    assert body is not None
    return _replies.decode(body)


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00\x00\x00\x03abc",  # garbage msgpack
        b"\x00\x00\x00\x02\x91\x63",  # a frame of an unknown tag
        encode(Pong(1)),  # a frame only an engine sends
        b"\x7f\xff\xff\xff",  # oversized
    ],
)
async def test_a_bad_frame_drops_that_connection_only(engine: Engine, bad: bytes, caplog):
    await engine.set_stock("sku-1", 5)
    async with trio.open_nursery() as nursery, linked(engine) as healthy:
        frames = await _served(engine, nursery)
        await frames.stream.send_all(bad)
        with trio.fail_after(5):
            assert await frames.receive() is None  # closed by the engine
        assert (await healthy.stock("sku-1")).on_hand == 5
    assert any("a bad frame" in record.getMessage() for record in caplog.records)


async def test_a_truncated_frame_then_a_hang_up_drops_the_connection(engine: Engine, caplog):
    async with trio.open_nursery() as nursery:
        frames = await _served(engine, nursery)
        await frames.stream.send_all(encode(Ping(1))[:-1])
        await frames.stream.send_eof()  # type: ignore[attr-defined]
        with trio.fail_after(5):
            assert await frames.receive() is None
    assert any("inside a frame" in record.getMessage() for record in caplog.records)


async def test_a_peer_that_skips_the_handshake_is_dropped(engine: Engine, caplog):
    caplog.set_level(logging.WARNING)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_connection(server, engine))
        frames = FrameStream(client)
        assert await frames.receive() is not None  # the ServerHello
        await frames.send(Request(1, c.HasProductCall("x")))
        with trio.fail_after(5):
            assert await frames.receive() is None
    assert any("during the handshake" in r.getMessage() for r in caplog.records)


async def test_a_silent_peer_is_dropped_after_the_handshake_timeout(engine: Engine, autojump_clock):
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_connection(server, engine, handshake_timeout_s=3))
        frames = FrameStream(client)
        assert await frames.receive() is not None
        with trio.fail_after(10):
            assert await frames.receive() is None


async def test_calls_beyond_the_limit_in_flight_are_overloaded(engine: Engine):
    await engine.set_stock("sku-1", 5)
    release = trio.Event()

    async def slow(call: Any) -> bool:
        await release.wait()
        return True

    async with trio.open_nursery() as nursery:
        frames = await _served(engine, nursery, max_in_flight=2, handlers={SlowCall: slow})
        for id in (1, 2, 3):
            await frames.send(Request(id, SlowCall()))
        reply = await _reply(frames)
        assert (type(reply), reply.id, reply.code) == (Failure, 3, "overloaded")
        release.set()
        replies = {(await _reply(frames)).id for _ in range(2)}
        assert replies == {1, 2}
        nursery.cancel_scope.cancel()


class SlowCall(c.CallBase[bool], tag="test.slow"):
    pass


async def test_an_unexpected_error_is_answered_as_internal_and_logged(engine: Engine, caplog):
    async def broken(call: Any) -> bool:
        raise RuntimeError("a bug")

    async with trio.open_nursery() as nursery:
        frames = await _served(engine, nursery, handlers={SlowCall: broken})
        await frames.send(Request(7, SlowCall()))
        reply = await _reply(frames)
        assert (type(reply), reply.code) == (Failure, "internal")
        assert "RuntimeError: a bug" in reply.message
        await frames.send(Request(8, c.HasProductCall("x")))
        assert (await _reply(frames)).id == 8  # the connection goes on
        nursery.cancel_scope.cancel()
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


async def test_a_caller_that_gives_up_leaves_the_link_working(engine: Engine, autojump_clock):
    release = trio.Event()

    async def slow(call: Any) -> bool:
        await release.wait()
        return True

    async with linked(engine, timeout_s=1.0, handlers={SlowCall: slow}) as remote:
        with pytest.raises(stockade.EngineUnavailable, match="did not answer within"):
            await remote.call(SlowCall())
        with trio.move_on_after(0.5):  # a caller cancelled by its own deadline
            await remote.call(SlowCall(), timeout_s=10)
        release.set()  # the late answers arrive and are dropped
        await trio.testing.wait_all_tasks_blocked()
        assert await remote.call(SlowCall()) is True
        assert await remote.has_product("x") is False
        assert remote.connected


async def test_a_stop_answers_the_calls_in_flight_then_closes(engine: Engine):
    release = trio.Event()

    async def slow(call: Any) -> bool:
        await release.wait()
        return True

    stop = trio.Event()
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_connection(server, engine, stop=stop, handlers={SlowCall: slow})
        )
        frames = FrameStream(client)
        await client_handshake(frames, None)
        await frames.send(Request(1, SlowCall()))
        await frames.send(Request(2, c.EventsCall()))
        await trio.testing.wait_all_tasks_blocked()
        stop.set()
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        got = {}
        while (body := await frames.receive()) is not None:
            reply = _replies.decode(body)
            got[reply.id] = reply
        assert type(got[1]) is ResultIn and msgspec.msgpack.decode(got[1].value) is True
        assert type(got[2]) is Failure and got[2].code == "engine_closed"


async def test_a_stream_sends_only_what_the_client_granted_and_stops_when_cancelled(
    engine: Engine, autojump_clock
):
    from stockade.protocol.frames import STREAM_WINDOW, Cancel, Credit, ItemIn

    decoder = msgspec.msgpack.Decoder(ItemIn | ResultIn | Failure | Pong)
    await engine.set_stock("sku-1", 10_000)
    for _ in range(STREAM_WINDOW + 50):
        await engine.place_order({"sku-1": 1})
    async with trio.open_nursery() as nursery:
        frames = await _served(engine, nursery)
        await frames.send(Request(1, c.EventsCall(0, ["order.placed"])))

        async def drain() -> list[Any]:
            """Every frame the engine sends until it is quiet (all tasks blocked: the
            clock jumps)."""
            got: list[Any] = []
            while True:
                with trio.move_on_after(0.2) as quiet:
                    body = await frames.receive()
                if quiet.cancelled_caught:
                    return got
                assert body is not None
                got.append(decoder.decode(body))

        first = await drain()
        assert len(first) == STREAM_WINDOW  # the window, not the 300 events there are
        assert all(type(frame) is ItemIn for frame in first)
        await frames.send(Credit(1, 10))
        assert len(await drain()) == 10
        await frames.send(Cancel(1))
        await frames.send(Credit(1, 1000))  # credit for a cancelled stream changes nothing
        await frames.send(Ping(5))
        assert [type(frame) for frame in await drain()] == [Pong]
        nursery.cancel_scope.cancel()
