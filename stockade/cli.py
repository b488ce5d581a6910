"""The ``stockade`` command."""

from __future__ import annotations

import argparse
import os
import secrets
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


def _serve(args: argparse.Namespace) -> int:
    from stockade.api.logs import log_event
    from stockade.api.server import ServerSettings, serve

    token = os.environ.get("STOCKADE_ADMIN_TOKEN", "")
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"STOCKADE_ADMIN_TOKEN not set; merchant token for this run: {token}", flush=True)
    settings = ServerSettings(
        database=args.database,
        host=args.host,
        port=args.port,
        durability=args.durability,
        admin_token=token,
        read_timeout_s=args.read_timeout,
    )
    try:
        trio.run(serve, settings)
    except stockade.StockadeError as exc:
        log_event("failed", error=type(exc).__name__, detail=str(exc))
        return 1
    return 0


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {port}")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {value!r}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stockade", description=stockade.__doc__)
    parser.add_argument("--version", action="version", version=stockade.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    env = os.environ.get
    serve = commands.add_parser("serve", help="run the HTTP order API")
    serve.add_argument(
        "--database",
        default=env("STOCKADE_DATABASE", "sqlite:///stockade.db"),
        help="sqlite:///file.db or postgresql://... (env STOCKADE_DATABASE)",
    )
    serve.add_argument(
        "--host",
        default=env("STOCKADE_HOST", "127.0.0.1"),
        help="address to listen on (env STOCKADE_HOST)",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=_port(env("STOCKADE_PORT", "8000")),
        help="port to listen on (env STOCKADE_PORT)",
    )
    serve.add_argument(
        "--durability",
        choices=["durable", "fast"],
        default=env("STOCKADE_DURABILITY", "durable"),
        help="answer after the commit (durable) or at once (fast)",
    )
    serve.add_argument(
        "--read-timeout",
        type=_seconds,
        default=env("STOCKADE_READ_TIMEOUT", "5"),
        metavar="SECONDS",
        help="close a connection whose client stays silent this long while the server waits"
        " for its bytes: the rest of a request, or its next one (env STOCKADE_READ_TIMEOUT)",
    )
    demo = commands.add_parser("demo", help="race buyers for the last units, in memory")
    demo.add_argument("--units", type=int, default=50)
    demo.add_argument("--buyers", type=int, default=400)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return trio.run(_demo, args.units, args.buyers)
    if args.command == "serve":
        return _serve(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
