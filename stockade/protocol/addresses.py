"""Engine addresses: ``unix:PATH`` or ``tcp://HOST:PORT``, several separated by commas."""

from __future__ import annotations

from typing import NamedTuple

import trio

from stockade.errors import InvalidRequest

__all__ = ["Address", "connect", "parse_addresses"]


class Address(NamedTuple):
    """``kind`` is ``unix`` (``path`` set) or ``tcp`` (``host`` and ``port`` set)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp://{self.host}:{self.port}"


def parse_addresses(url: str) -> list[Address]:
    """Every address of ``url`` (comma-separated), in order. Raises InvalidRequest for one
    that is neither ``unix:PATH`` nor ``tcp://HOST:PORT``, or for none at all."""
    if not isinstance(url, str):
        raise InvalidRequest(f"an engine address must be a string, not {url!r}")
    found = [_parse(part.strip()) for part in url.split(",") if part.strip()]
    if not found:
        raise InvalidRequest("no engine address given (unix:PATH or tcp://HOST:PORT)")
    return found


def _parse(text: str) -> Address:
    if text.startswith("unix:"):
        path = text[len("unix:") :].removeprefix("//")
        if path:
            return Address("unix", path=path)
    elif text.startswith("tcp://"):
        host, sep, port = text[len("tcp://") :].rstrip("/").rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if sep and host and port.isdigit() and 0 <= int(port) < 65536:
            return Address("tcp", host=host, port=int(port))
    raise InvalidRequest(
        f"bad engine address {text!r}: use unix:PATH or tcp://HOST:PORT (e.g. tcp://127.0.0.1:7400)"
    )


async def connect(address: Address) -> trio.abc.Stream:
    """A stream to ``address``. Raises OSError when nothing answers there. Cancellable."""
    if address.kind == "unix":
        return await trio.open_unix_socket(address.path)
    return await trio.open_tcp_stream(address.host, address.port)
