"""The ``stockade`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

import stockade

__all__ = ["main"]


async def _demo(units: int, buyers: int) -> int:
    """The last-unit rush: ``buyers`` tasks race for ``units`` units of one product."""
    async with stockade.open_engine(None) as engine:
        await engine.set_stock("demo-sku", on_hand=units)
        sold = refused = 0

        async def buyer() -> None:
            nonlocal sold, refused
            try:
                await engine.place_order({"demo-sku": 1})
                sold += 1
            except stockade.OutOfStock:
                refused += 1

        async with trio.open_nursery() as nursery:
            for _ in range(buyers):
                nursery.start_soon(buyer)
        level = await engine.stock("demo-sku")
    print(f"{buyers} buyers raced for {units} units of demo-sku:")
    print(f"  orders confirmed: {sold}\n  refused (out of stock): {refused}")
    print(f"  stock now: on_hand={level.on_hand} reserved={level.reserved}")
    ok = sold == units - level.on_hand and level.on_hand >= 0
    print("  oversold: " + ("no" if ok else "YES (bug!)"))
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stockade", description=stockade.__doc__)
    parser.add_argument("--version", action="version", version=stockade.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="race buyers for the last units, in memory")
    demo.add_argument("--units", type=int, default=50)
    demo.add_argument("--buyers", type=int, default=400)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return trio.run(_demo, args.units, args.buyers)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
