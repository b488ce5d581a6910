"""What a webhook subscription may say, and how each delivery is signed (Standard Webhooks).

A delivery carries three headers (https://www.standardwebhooks.com/, version 1.0.0):
``webhook-id`` (the event's seq, the same on every retry: a receiver's idempotency key),
``webhook-timestamp`` (UNIX seconds of the attempt; a retry is signed afresh, so a receiver can
refuse old timestamps) and ``webhook-signature``: ``v1,`` then the base64 of the HMAC-SHA256 of
``{webhook-id}.{webhook-timestamp}.{body}``, keyed by the secret's bytes.

A secret is the spec's serialisation: ``whsec_`` then the standard base64 (with its padding) of
24 to 64 random bytes (192 to 512 bits), e.g. ``"whsec_" +
base64.b64encode(os.urandom(32)).decode()``. Anything else is refused.

A URL is ``http://`` or ``https://``, a host name or an IPv4 address, an optional port, path
and query, no user info or fragment, at most 2000 characters. Any host is accepted, loopback
included: a server whose merchants must not reach its private network puts the deliveries
behind an egress proxy (``HTTPS_PROXY`` and the like are honoured). The patterns below are
what the server checks and what /openapi.json declares, and mean the same under Python's
``re`` and ECMA-262.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from stockade.errors import InvalidRequest

__all__ = [
    "MAX_URL_LENGTH",
    "SECRET_PATTERN",
    "URL_PATTERN",
    "check_url",
    "secret_key",
    "sign",
]

_B64 = "[A-Za-z0-9+/]"
#: ``whsec_`` and the base64 of 24 to 64 bytes: 8 to 21 groups of four characters (3 bytes
#: each), the last of them possibly padded (1 or 2 bytes); 64 bytes is 21 groups and ``xx==``.
SECRET_PATTERN = (
    rf"^whsec_(?:{_B64}{{4}}){{8,20}}"
    rf"(?:{_B64}{{4}}(?:{_B64}{{2}}==)?|{_B64}{{2}}==|{_B64}{{3}}=)?(?!\n)$"
)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: The last label of a host name starts with a letter, so no name can pass for an IP address.
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}|(?:{_LABEL}\.)*{_TOP_LABEL})"
_PORT = (
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
    r"|6553[0-5]))?"
)
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})"
URL_PATTERN = rf"^https?://{_HOST}{_PORT}(?:/{_PCHAR}*)?(?:\?(?:{_PCHAR}|\?)*)?(?!\n)$"
MAX_URL_LENGTH = 2000

_SECRET = re.compile(SECRET_PATTERN)
_URL = re.compile(URL_PATTERN)


def secret_key(secret: object) -> bytes:
    """The HMAC key a secret stands for; InvalidRequest for anything but ``whsec_`` and the
    base64 of 24 to 64 bytes."""
    if not isinstance(secret, str) or not _SECRET.search(secret):
        raise InvalidRequest(
            "secret must be 'whsec_' followed by the base64 of 24 to 64 random bytes"
        )
    try:
        return base64.b64decode(secret[len("whsec_") :], validate=True)
    except binascii.Error as exc:  # pragma: no cover - the pattern admits valid base64 only
        raise InvalidRequest(f"secret: {exc}") from exc


def check_url(url: object) -> str:
    """``url`` if deliveries may go to it (see the module docstring), else InvalidRequest."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or not _URL.search(url):
        raise InvalidRequest(
            "url must be an http:// or https:// URL with a host name or IPv4 address, no user "
            f"info or fragment, at most {MAX_URL_LENGTH} characters"
        )
    return url


def sign(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` header of a delivery."""
    signed = b"%s.%s.%s" % (message_id.encode(), timestamp.encode(), body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
