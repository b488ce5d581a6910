"""What a sink's URL may say (design.md §14), read once into a :class:`SinkTarget`, and how it
is shown: never with its password.

* ``nats://[USER:PASS@]HOST[:4222]/SUBJECT``: NATS JetStream; SUBJECT is dot-separated tokens
  of letters, digits, ``-`` and ``_`` (no wildcard).
* ``redis://[[USER]:PASS@]HOST[:6379][/DB]?stream=KEY``: Redis Streams; DB a number (0 when
  left out), KEY the stream's key (1 to 512 characters, no control character).
* ``amqp://[USER:PASS@]HOST[:5672][/VHOST]?exchange=NAME``: RabbitMQ; VHOST percent-encoded
  (``%2F`` is ``/``, the default when left out), NAME the topic exchange (1 to 127 letters,
  digits, ``-``, ``_``, ``.`` or ``:``, not starting with ``amq.``).

HOST is a host name or an IPv4 address; user and password are percent-decoded; no fragment,
and no query parameter but the one named. At most 2000 characters. Anything else is refused
with InvalidRequest saying why (the URL itself is never repeated: it may hold a password).
Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from stockade.errors import InvalidRequest

__all__ = [
    "DEFAULT_PORTS",
    "MAX_SINK_URL_LENGTH",
    "SCHEMES",
    "SINK_URL_PATTERN",
    "Scheme",
    "SinkTarget",
    "mask",
    "parse",
]

Scheme = Literal["nats", "redis", "amqp"]
SCHEMES: tuple[Scheme, ...] = ("nats", "redis", "amqp")
DEFAULT_PORTS: dict[str, int] = {"nats": 4222, "redis": 6379, "amqp": 5672}
MAX_SINK_URL_LENGTH = 2000

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_LABEL}\.)*{_LABEL}(?!\n)$")
_SUBJECT = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*(?!\n)$")
_EXCHANGE = re.compile(r"^[A-Za-z0-9_.:-]{1,127}(?!\n)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


_URL_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
#: A host the pattern draws: an IPv4 address, or a name whose last label ends with a letter.
_URL_HOST = (
    rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}|(?:{_URL_LABEL}\.)*[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z])?)"
)
_URL_PORT = (
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5]))?"
)
#: A printable percent-escape (a control character is refused once decoded).
_ESCAPE = r"%(?:[2-689A-Fa-f][0-9A-Fa-f]|7[0-9A-Ea-e])"
#: A character of a user name or password: RFC 3986's unreserved and sub-delims, or an escape.
_UCHAR = rf"(?:[A-Za-z0-9._~!$&'()*+,;=-]|{_ESCAPE})"
#: ``user@``, ``user:password@`` or ``:password@`` (Redis's default user).
_URL_USER = rf"(?:(?:{_UCHAR}+(?::{_UCHAR}+)?|:{_UCHAR}+)@)?"
#: A character of a Redis stream key in the query.
_KCHAR = rf"(?:[A-Za-z0-9._~!$'()*,;:@/-]|{_ESCAPE})"
_AUTHORITY = f"{_URL_USER}{_URL_HOST}{_URL_PORT}"
#: The URLs the API document describes (its ``pattern``), for clients and schema-driven tools:
#: the usual forms, a strict subset of what :func:`parse` takes (a test draws from it and
#: parses every one), so a URL that matches is never refused; and :func:`parse` refuses any
#: URL that does not match, after its own checks have said what is wrong where they can.
SINK_URL_PATTERN = (
    rf"^(?:nats://{_AUTHORITY}/[A-Za-z0-9_-]{{1,32}}(?:\.[A-Za-z0-9_-]{{1,32}}){{0,6}}"
    rf"|redis://{_AUTHORITY}(?:/[0-9]{{1,6}})?\?stream={_KCHAR}{{1,200}}"
    rf"|amqp://{_AUTHORITY}(?:/(?:[A-Za-z0-9_~-]|{_ESCAPE}){{0,60}})?"
    r"\?exchange=(?!amq\.)[A-Za-z0-9_.:-]{1,127}"
    r")(?!\n)$"
)
_DOCUMENTED = re.compile(SINK_URL_PATTERN)


class SinkTarget(msgspec.Struct, frozen=True):
    """Where a sink publishes: ``name`` is the NATS subject, the Redis stream key or the AMQP
    exchange; ``database`` the Redis DB; ``vhost`` the AMQP virtual host."""

    scheme: Scheme
    host: str
    port: int
    user: str | None
    password: str | None
    name: str
    database: int = 0
    vhost: str = "/"


def _refuse(reason: str) -> InvalidRequest:
    return InvalidRequest(f"url: {reason}")


def parse(url: object) -> SinkTarget:
    """The target ``url`` names (see the module docstring); InvalidRequest saying what is
    wrong otherwise."""
    if not isinstance(url, str) or not url:
        raise _refuse("a sink URL is a non-empty string")
    if len(url) > MAX_SINK_URL_LENGTH:
        raise _refuse(f"at most {MAX_SINK_URL_LENGTH} characters")
    if _CONTROL.search(url) or " " in url:
        raise _refuse("no spaces or control characters")
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise _refuse("not a URL: use nats://, redis:// or amqp://")
    if scheme not in SCHEMES:
        raise _refuse(f"unknown scheme {scheme[:20]!r}: use nats://, redis:// or amqp://")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(f"malformed ({exc})") from None
    host = parts.hostname or ""
    if not _HOST.search(host) or (host[-1:].isdigit() and not _is_ipv4(host)):
        raise _refuse("a host name or an IPv4 address is needed")
    if parts.fragment or url.endswith("#"):
        raise _refuse("no fragment")
    user = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    if port == 0:
        raise _refuse("port 0 is no port")
    port = DEFAULT_PORTS[scheme] if port is None else port
    path = parts.path
    if scheme == "nats":
        if parts.query or url.endswith("?"):
            raise _refuse("nats:// takes no query: the subject is the path")
        subject = path.removeprefix("/")
        if not subject:
            raise _refuse("nats:// needs a subject: nats://HOST:4222/SUBJECT")
        if not _SUBJECT.search(subject) or len(subject) > 255:
            raise _refuse("the subject is dot-separated tokens of letters, digits, - and _")
        return _documented(SinkTarget("nats", host, port, user, password, subject), url)
    query = _query(parts.query, "stream" if scheme == "redis" else "exchange")
    if scheme == "redis":
        key = query.get("stream")
        if not key:
            raise _refuse("redis:// needs a stream: redis://HOST:6379/0?stream=KEY")
        if len(key) > 512:
            raise _refuse("the stream key is at most 512 characters")
        db = path.removeprefix("/") or "0"
        if not (db.isascii() and db.isdigit()) or int(db) > 1_000_000:
            raise _refuse("the Redis database is a number: redis://HOST:6379/DB?stream=KEY")
        target = SinkTarget("redis", host, port, user, password, key, database=int(db))
        return _documented(target, url)
    exchange = query.get("exchange")
    if not exchange:
        raise _refuse("amqp:// needs an exchange: amqp://USER:PASS@HOST:5672/VHOST?exchange=NAME")
    if not _EXCHANGE.search(exchange) or exchange.startswith("amq."):
        raise _refuse("the exchange is 1 to 127 letters, digits, -, _, . or :, not amq.*")
    vhost = unquote(path.removeprefix("/")) if path not in ("", "/") else "/"
    if _CONTROL.search(vhost) or "/" in path.removeprefix("/"):
        raise _refuse("the virtual host is one path segment (percent-encode a '/' as %2F)")
    return _documented(SinkTarget("amqp", host, port, user, password, exchange, vhost=vhost), url)


def _documented(target: SinkTarget, url: str) -> SinkTarget:
    """``target``, if ``url`` is of a form the API document gives (:data:`SINK_URL_PATTERN`):
    the server takes exactly what the document says, not a superset of it."""
    if _DOCUMENTED.fullmatch(url) is None:
        raise _refuse(
            "not of the documented form (the API document's pattern): e.g. a NATS subject of at "
            "most 7 tokens of 1 to 32 characters, a Redis stream key of at most 200 characters, "
            "an AMQP virtual host of letters, digits, _~- and %-escapes"
        )
    return target


def _is_ipv4(host: str) -> bool:
    pieces = host.split(".")
    return len(pieces) == 4 and all(p.isdigit() and int(p) <= 255 and p == str(int(p))
                                    for p in pieces)  # fmt: skip


def _query(query: str, allowed: str) -> dict[str, str]:
    """The query's parameters; InvalidRequest for one other than ``allowed``, or given twice."""
    if not query:
        return {}
    try:
        found = parse_qs(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise _refuse("a malformed query") from None
    for name, values in found.items():
        if name != allowed:
            raise _refuse(f"unknown query parameter {name[:40]!r}: only {allowed!r}")
        if len(values) != 1:
            raise _refuse(f"{allowed!r} is given twice")
    return {name: values[0] for name, values in found.items()}


def mask(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: what the API and the logs show.
    Never raises (a URL that does not parse is shown as far as it can be without secrets)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    query_at = authority.find("?")
    if query_at >= 0:  # no path: the query follows the authority
        authority, tail, slash = authority[:query_at], authority[query_at:] + slash + tail, ""
    credentials, at, hostport = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = credentials.partition(":")
    shown = f"{user}:***" if colon else user
    return f"{scheme}://{shown}@{hostport}{slash}{tail}"
