"""The handshake that opens every connection: versions, then a mutual HMAC-SHA256 proof of
``STOCKADE_ENGINE_SECRET`` before any call.

1. engine → client: ``ServerHello(version, server nonce, secret_required)``
2. client → engine: ``ClientHello(version, client nonce, proof)`` where the client's proof is
   ``HMAC(secret, "stockade-client" | server nonce | client nonce)`` (empty without a secret)
3. engine → client: ``Welcome(proof)``, the engine's proof ``HMAC(secret, "stockade-server" |
   client nonce | server nonce)``, or ``Refused(reason)`` and the engine closes.

Each side checks the other's proof in constant time. Fresh 32-byte nonces on both sides mean
a recorded exchange proves nothing later, and the secret never travels. A client holding a
secret refuses an engine that cannot prove it (an engine without one, or with another), so a
front never talks to an impostor; an engine with a secret refuses a client that cannot.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TypeVar

import msgspec

from stockade.errors import EngineRefused
from stockade.protocol.frames import (
    PROTOCOL_VERSION,
    ClientHello,
    FrameStream,
    ProtocolError,
    Refused,
    ServerHello,
    Welcome,
)

__all__ = ["client_handshake", "proof", "server_handshake"]

T = TypeVar("T")

_NONCE_BYTES = 32
_server_hello = msgspec.msgpack.Decoder(ServerHello)
_client_hello = msgspec.msgpack.Decoder(ClientHello)
_answer = msgspec.msgpack.Decoder(Welcome | Refused)


def proof(secret: bytes, side: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(secret, b"stockade-" + side + first + second, hashlib.sha256).digest()


async def _receive(frames: FrameStream, decoder: msgspec.msgpack.Decoder[T]) -> T:
    body = await frames.receive()
    if body is None:
        raise ProtocolError("the peer closed the connection during the handshake")
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"a bad handshake frame: {exc}") from exc


async def server_handshake(frames: FrameStream, secret: bytes | None) -> None:
    """The engine's side: returns once the client is admitted. Raises EngineRefused (after
    telling the client why) for a client that cannot prove ``secret`` or speaks another
    version, ProtocolError for one that breaks the protocol. Blocks on the client: run it
    under a deadline."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    await frames.send(ServerHello(PROTOCOL_VERSION, nonce, secret is not None))
    hello = await _receive(frames, _client_hello)
    reason = None
    if hello.version != PROTOCOL_VERSION:
        reason = f"this engine speaks protocol {PROTOCOL_VERSION}, the client {hello.version}"
    elif secret is not None and not hmac.compare_digest(
        hello.proof, proof(secret, b"client", nonce, hello.nonce)
    ):
        reason = "the client did not prove STOCKADE_ENGINE_SECRET (a wrong or missing secret)"
    if reason is not None:
        await frames.send(Refused(reason))
        raise EngineRefused(reason)
    answer = b"" if secret is None else proof(secret, b"server", hello.nonce, nonce)
    await frames.send(Welcome(answer))


async def client_handshake(frames: FrameStream, secret: bytes | None) -> None:
    """The client's side: returns once both sides are proven. Raises EngineRefused when the
    engine refuses this client, or cannot prove ``secret`` itself; ProtocolError for an
    engine that breaks the protocol. Blocks on the engine: run it under a deadline."""
    hello = await _receive(frames, _server_hello)
    if hello.version != PROTOCOL_VERSION:
        raise EngineRefused(
            f"the engine speaks protocol {hello.version}, this client {PROTOCOL_VERSION}"
        )
    if hello.secret_required and secret is None:
        raise EngineRefused("the engine requires STOCKADE_ENGINE_SECRET and none is set here")
    nonce = secrets.token_bytes(_NONCE_BYTES)
    mine = b"" if secret is None else proof(secret, b"client", hello.nonce, nonce)
    await frames.send(ClientHello(PROTOCOL_VERSION, nonce, mine))
    answer = await _receive(frames, _answer)
    if isinstance(answer, Refused):
        raise EngineRefused(f"the engine refused this client: {answer.reason}")
    if secret is not None and not hmac.compare_digest(
        answer.proof, proof(secret, b"server", nonce, hello.nonce)
    ):
        raise EngineRefused(
            "the engine did not prove STOCKADE_ENGINE_SECRET (it has another secret, or none)"
        )
