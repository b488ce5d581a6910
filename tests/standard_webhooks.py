"""A Standard Webhooks receiver's signature check, written here from the spec
(https://www.standardwebhooks.com/), independent of stockade's code, so the tests check the
server's signatures against the spec and not against themselves."""

from __future__ import annotations

import base64
import hashlib
import hmac


def signature_is_valid(headers: dict[str, str], body: bytes, secret: str) -> bool:
    """Verify a delivery as the spec says a receiver does: drop ``whsec_``, base64-decode the
    rest, HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``, compare with each
    ``v1,`` signature in constant time."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = headers["webhook-id"] + "." + headers["webhook-timestamp"] + "."
    expected = base64.b64encode(hmac.new(key, signed.encode() + body, hashlib.sha256).digest())
    return any(
        hmac.compare_digest(expected, candidate.split(",", 1)[1].encode())
        for candidate in headers["webhook-signature"].split(" ")
        if candidate.startswith("v1,")
    )
