"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import sys
import time
from typing import Any

import msgspec

__all__ = ["log_event"]

_encoder = msgspec.json.Encoder()


def log_event(event: str, **fields: Any) -> None:
    line = _encoder.encode({"ts": round(time.time(), 3), "event": event, **fields})
    sys.stderr.write(line.decode() + "\n")
    sys.stderr.flush()
