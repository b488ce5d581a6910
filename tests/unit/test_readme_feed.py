"""The webhook receiver the README shows verifies what stockade signs, and only that."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from stockade.outbound.signing import secret_key, sign

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def readme_verify() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (code,) = [block for block in blocks if "def verify(" in block]
    scope: dict[str, Any] = {}
    exec(code, scope)
    return scope["verify"]


def test_the_readme_receiver_accepts_a_delivery_and_refuses_a_forgery_or_a_replay():
    verify = readme_verify()
    body = b'{"seq":42,"type":"order.confirmed","at":"2030-01-01T00:00:00Z","data":{}}'
    now = str(int(time.time()))
    headers = {"webhook-id": "42", "webhook-timestamp": now,
               "webhook-signature": sign(secret_key(SECRET), "42", now, body)}  # fmt: skip
    assert verify(headers, body, SECRET)
    assert not verify(headers, body.replace(b"42", b"43"), SECRET)  # tampered
    assert not verify({**headers, "webhook-id": "43"}, body, SECRET)
    assert not verify(headers, body, "whsec_" + "A" * 32)  # another secret
    old = str(int(time.time()) - 3600)
    replayed = {**headers, "webhook-timestamp": old,
                "webhook-signature": sign(secret_key(SECRET), "42", old, body)}  # fmt: skip
    assert not verify(replayed, body, SECRET)
