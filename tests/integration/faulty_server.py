"""``stockade serve`` with faults planted, for the tests of what its log says about them:
``python -m tests.integration.faulty_server serve [options]``.

* an order with a line for the sku ``crash`` raises RuntimeError inside the engine call (the
  order route's own 500, through the fast path or Quart);
* confirming any order raises RuntimeError (a Quart route's 500, from the app's error handler);
* accounting for a request whose ``X-Request-Id`` starts with ``explode`` raises: after the fast
  path has answered (the exception escapes to hypercorn, which logs it), or in Quart's
  ``after_request`` (Quart logs it, then answers 500).
"""

from __future__ import annotations

import sys
from typing import Any

from stockade.api.accounting import Accounting
from stockade.cli import main
from stockade.engine.engine import Engine

__all__ = ["plant_faults"]


def plant_faults() -> None:
    place_order = Engine.place_order
    answered = Accounting.answered

    async def place_or_crash(self: Engine, lines: Any, *args: Any, **kwargs: Any) -> Any:
        if any(sku == "crash" for sku, _ in lines):
            raise RuntimeError("planted fault: placing an order")
        return await place_order(self, lines, *args, **kwargs)

    async def confirm(self: Engine, order_id: str, **kwargs: Any) -> Any:
        raise RuntimeError(f"planted fault: confirming {order_id}")

    def answered_or_explode(self: Accounting, method: str, route: str, status: int,
                            started: float, request_id: str) -> None:  # fmt: skip
        answered(self, method, route, status, started, request_id)
        if request_id.startswith("explode"):
            raise RuntimeError(f"planted fault: accounting for {request_id}")

    setattr(Engine, "place_order", place_or_crash)  # noqa: B010 (mypy: no method-assign)
    setattr(Engine, "confirm", confirm)  # noqa: B010
    setattr(Accounting, "answered", answered_or_explode)  # noqa: B010


if __name__ == "__main__":
    plant_faults()
    sys.exit(main(sys.argv[1:]))
