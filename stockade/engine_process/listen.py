"""Listening for engine-protocol connections: a Unix socket (created 0600) or TCP."""

from __future__ import annotations

import contextlib
import os
import stat

import trio

from stockade.errors import InvalidRequest
from stockade.protocol.addresses import Address

__all__ = ["open_listener"]

_BACKLOG = 512


async def open_listener(address: Address) -> trio.SocketListener:
    """A listener on ``address``. A Unix socket is created readable and writable by this
    user only (0600); a stale socket file left by a dead engine is replaced, anything else at
    that path is refused (InvalidRequest). Raises OSError when the address cannot be bound
    (in use, no permission)."""
    if address.kind == "tcp":
        listeners = await trio.open_tcp_listeners(address.port, host=address.host)
        if len(listeners) != 1:  # a host name resolving to several addresses
            for listener in listeners:
                await listener.aclose()
            raise InvalidRequest(f"{address} names several addresses: give one IP address")
        return listeners[0]
    path = address.path
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise InvalidRequest(f"{path} exists and is not a socket: refusing to replace it")
        if await _answers(path):
            raise InvalidRequest(f"another engine listens on {path}")
        os.unlink(path)  # left by an engine that died
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)  # the socket file is born 0600: no window where others may connect
        try:
            await sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _answers(path: str) -> bool:
    try:
        stream = await trio.open_unix_socket(path)
    except OSError:
        return False
    await stream.aclose()
    return True
