"""Bounds on anonymous callers under ``serve --public-holds`` (design.md §13).

An anonymous caller may place holds and change, extend or cancel them; without bounds one
request could hold a whole drop for a day. Four bounds, each a ``serve`` flag:

* **units per line** (``max_units``) and **hold length** (``max_hold_s``): a body over either
  is 422, checked here before the engine is asked (placing, a cart edit, an extension);
* **open holds per client address** (``max_open``): counted by the engine, where the orders
  are (``place_order(holder=, max_open_holds=)``), so a rush spread over several fronts
  (``serve --workers``) still meets one count; over it, 429 ``too-many-holds`` with
  ``Retry-After`` (when the address's first hold lapses);
* **requests per second per client address** (``rate``, bursts of ``burst``): a token bucket
  here, in the front, before anything else is done (it protects the front's own CPU, which
  is what a flood spends first); over it, 429 ``too-many-requests`` with ``Retry-After``. Each
  front keeps its own buckets, so with N fronts an address may reach N times ``rate`` in total;
  the hard bound on what it can hold is the engine's open-holds count.

Callers with a key are never bounded here. The client address is the connection's peer, or,
with ``trust_forwarded``, read from the header the proxy in front writes (:func:`client_of`).
An IPv6 client is keyed by its /64 network (one host usually has a whole /64). Memory is
bounded: buckets are dropped once refilled (an idle address costs nothing) and at most
``max_addresses`` are kept (past that the least recently seen is forgotten, and may burst
again).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import msgspec
import trio

from stockade.api.problems import Problem
from stockade.engine.holders import MAX_HOLDER_LENGTH
from stockade.errors import InvalidRequest

__all__ = [
    "FORWARDED_HEADERS",
    "AnonymousBounds",
    "HoldBounds",
    "RateLimiter",
    "TooManyRequests",
    "client_of",
    "parse_networks",
]

#: What ``--trust-forwarded`` may name: the header the proxy in front writes.
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class HoldBounds(msgspec.Struct, frozen=True, kw_only=True):
    """The bounds on anonymous callers (see the module docstring and the README for why
    these defaults). ``trust_forwarded``: "" (use the peer address), or the header to read
    the client's address from; ``trusted_proxies``: networks of further proxies in that
    header's chain, skipped from the right."""

    max_units: int = 10
    max_hold_s: int = 900
    max_open: int = 10
    rate: float = 5.0
    burst: int = 20
    trust_forwarded: Literal["", "x-forwarded-for", "forwarded"] = ""
    trusted_proxies: tuple[str, ...] = ()
    max_addresses: int = 100_000


class TooManyRequests(Problem):
    """429: an anonymous client address over its request rate."""

    def __init__(self, rate: float, retry_after_s: float) -> None:
        super().__init__(
            429, "too-many-requests", "Too many requests",
            f"anonymous requests from one address are limited to {rate:g} a second; retry "
            "after the time in Retry-After, or use a key",
            headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
        )  # fmt: skip


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, at most ``burst`` saved. ``clock``
    gives seconds (trio's, so a MockClock drives it in tests). Never blocks."""

    def __init__(
        self, rate: float, burst: int, max_keys: int = 100_000,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:  # fmt: skip
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def admit(self, key: str) -> float:
        """Take a token of ``key``'s: 0.0 if there was one, else the seconds until there is
        (nothing taken)."""
        now = self.clock()
        buckets = self._buckets
        tokens, when = buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        if tokens < 1.0:
            buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        buckets[key] = (tokens - 1.0, now)
        self._forget(now)
        return 0.0

    def _forget(self, now: float) -> None:
        """Drop the least recently seen buckets that have refilled (the same as none), a few
        a call; past ``max_keys``, the least recently seen whatever its state."""
        buckets = self._buckets
        for _ in range(2):
            oldest = next(iter(buckets))
            tokens, when = buckets[oldest]
            if tokens + (now - when) * self.rate < self.burst and len(buckets) <= self.max_keys:
                return
            del buckets[oldest]
            if not buckets:
                return

    def __len__(self) -> int:
        return len(self._buckets)


def parse_networks(text: str) -> tuple[str, ...]:
    """Comma-separated networks (``10.0.0.0/8, 2001:db8::/32``, or single addresses) in
    their normal form; ValueError naming a bad one."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            try:
                out.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError:
                raise ValueError(f"not a network or address: {part!r}") from None
    return tuple(out)


def _hops(header: str, values: Iterable[bytes]) -> list[str]:
    """The addresses in the chain of ``header`` (every line of it, in order)."""
    joined = ",".join(value.decode("latin-1") for value in values)
    hops: list[str] = []
    for element in joined.split(","):
        element = element.strip()
        if header == "forwarded":  # RFC 7239: for=192.0.2.60;proto=http, for="[2001:db8::1]:80"
            found = ""
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.strip().lower() == "for":
                    found = value.strip().strip('"')
            element = found
        if element:
            hops.append(_host(element))
    return hops


def _host(hop: str) -> str:
    """A hop without its port (``1.2.3.4:80``, ``[2001:db8::1]:80``)."""
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def client_of(
    peer: str | None,
    headers: Iterable[tuple[bytes, bytes]],
    trust_forwarded: str = "",
    trusted: tuple[Network, ...] = (),
) -> str:
    """The client address to bound: the connection's ``peer``; with ``trust_forwarded`` (the
    header a proxy in front writes: ``x-forwarded-for`` or ``forwarded``), the right-most hop
    of that header's chain that is not in ``trusted`` (the proxies' networks), since only the
    hops a trusted proxy appended can be believed and a client may send any header it likes.
    Only the one header is read: a proxy that writes one and passes the other through would
    let a client choose its own address. A header missing, or all trusted: the left-most
    hop, or the peer. An IPv6 address is keyed by its /64."""
    address = peer or "unknown"
    if trust_forwarded:
        name = trust_forwarded.encode()
        hops = _hops(trust_forwarded, (value for key, value in headers if key.lower() == name))
        for hop in reversed(hops):
            address = hop
            if not _within(hop, trusted):
                break
    return _key(address)


def _within(hop: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(hop)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_HOLDER_LENGTH] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class AnonymousBounds:
    """:class:`HoldBounds` applied: one per app (its buckets are this front's)."""

    def __init__(self, bounds: HoldBounds) -> None:
        self.bounds = bounds
        self._trusted = tuple(ipaddress.ip_network(n) for n in bounds.trusted_proxies)
        self._rate = RateLimiter(bounds.rate, bounds.burst, bounds.max_addresses)

    def client(self, scope: Mapping[str, object]) -> str:
        """The client address of an ASGI ``scope`` (see :func:`client_of`)."""
        peer = scope.get("client")
        host = peer[0] if isinstance(peer, list | tuple) and peer else None
        headers = scope.get("headers")
        pairs: Iterable[tuple[bytes, bytes]] = headers if isinstance(headers, list) else ()
        return client_of(host, pairs, self.bounds.trust_forwarded, self._trusted)

    def admit(self, client: str) -> None:
        """Count one request of ``client``; TooManyRequests if it is over its rate."""
        wait = self._rate.admit(client)
        if wait:
            raise TooManyRequests(self.bounds.rate, wait)

    def check_lines(self, lines: Iterable[tuple[str, int]]) -> None:
        """422 for a line over ``max_units``."""
        most = self.bounds.max_units
        for sku, qty in lines:
            if qty > most:
                raise InvalidRequest(
                    f"an anonymous hold takes at most {most} units per line, not {qty} of "
                    f"{sku!r}; more needs a key"
                )

    def check_hold(self, hold_seconds: int | None) -> None:
        """422 for a hold longer than ``max_hold_s``."""
        most = self.bounds.max_hold_s
        if hold_seconds is not None and hold_seconds > most:
            raise InvalidRequest(
                f"an anonymous hold lasts at most {most} s, not {hold_seconds}; longer needs a key"
            )

    @property
    def addresses(self) -> int:
        """Client addresses with a bucket kept (for tests and statistics)."""
        return len(self._rate)
