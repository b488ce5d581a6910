"""The ``stockade`` command: ``serve``, ``engine``, ``keys``, ``demo``, ``check``, ``import``,
``export``."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime

import trio

import stockade
from stockade._open import EngineOptions, store_for
from stockade.fronts.supervised import watch_supervisor
from stockade.options import (
    add_engine_flags,
    add_public_hold_flags,
    engine_flag_args,
    engine_options,
    hold_bounds,
    positive_integer,
    positive_number,
    public_hold_flag_args,
)
from stockade.persistence.journal import StoreUnavailable
from stockade.persistence.keys import (
    ROLES,
    KeyedStore,
    KeyRecord,
    KeyTable,
    check_key_name,
    make_key,
)
from stockade.persistence.schema import KEYS_SINCE
from stockade.stockfile import FORMATS

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


def _serve(args: argparse.Namespace, options: EngineOptions) -> int:
    from stockade.api.feed import FeedSettings
    from stockade.api.logs import log_event
    from stockade.api.server import ServerSettings, serve

    if args.workers > 1 and getattr(args, "engine", None):
        print("stockade serve: --workers starts its own engine; a front of --engine is one "
              "process: start as many as you need", file=sys.stderr)  # fmt: skip
        return 2
    token = os.environ.get("STOCKADE_ADMIN_TOKEN", "")
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"STOCKADE_ADMIN_TOKEN not set; merchant token for this run: {token}", flush=True)
    if args.workers > 1:
        return _supervise(args, token, options)
    settings = ServerSettings(
        database=args.database,
        host=args.host,
        port=args.port,
        durability=args.durability,
        admin_token=token,
        read_timeout_s=args.read_timeout,
        public_holds=args.public_holds,
        feed=FeedSettings(max_streams=args.max_streams, lifetime_s=args.stream_lifetime),
        engine=args.engine,
        engine_timeout_s=args.engine_timeout,
        engine_options=options,
        bounds=hold_bounds(args),
    )
    try:
        trio.run(serve, settings)
    except stockade.StockadeError as exc:
        log_event("failed", error=type(exc).__name__, detail=str(exc))
        return 1
    except Exception as exc:  # a bug: one JSON line with its traceback, like every log line
        log_event("failed", error=type(exc).__name__, detail=str(exc),
                  exception=traceback.format_exc())  # fmt: skip
        return 1
    return 0


def _supervise(args: argparse.Namespace, token: str, options: EngineOptions) -> int:
    """``serve --workers N``: the supervisor of one engine process and N fronts."""
    from stockade.fronts.supervisor import SupervisorSettings, supervise

    front_args = ["--read-timeout", str(args.read_timeout), "--max-streams", str(args.max_streams),
                  "--stream-lifetime", str(args.stream_lifetime),
                  "--engine-timeout", str(args.engine_timeout)]  # fmt: skip
    if args.public_holds:
        front_args.append("--public-holds")
    front_args += public_hold_flag_args(hold_bounds(args))
    settings = SupervisorSettings(
        workers=args.workers,
        database=args.database,
        durability=args.durability,
        host=args.host,
        port=args.port,
        admin_token=token,
        engine_secret=os.environ.get("STOCKADE_ENGINE_SECRET", "") or secrets.token_urlsafe(32),
        front_args=tuple(front_args),
        engine_args=tuple(engine_flag_args(options)),
    )
    try:
        return trio.run(supervise, settings)
    except OSError as exc:  # the port: in use, or not ours to bind
        print(f"stockade serve: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)  # fmt: skip
        return 1


async def _keys(args: argparse.Namespace) -> int:
    """``stockade keys create|list|revoke``: straight on the store's key table, whether or not
    a server owns the store (it never takes the owner's lock). A database without a key table
    gets one, for ``create``, if nobody owns it."""
    if not args.database.startswith(("sqlite:///", "postgresql://", "postgres://")):
        print(f"stockade keys: keys live in a database: --database sqlite:///FILE or "
              f"postgresql://..., not {args.database!r}", file=sys.stderr)  # fmt: skip
        return 2
    if args.action == "create":
        try:
            check_key_name(args.name)
        except stockade.InvalidRequest as exc:
            print(f"stockade keys: {exc}", file=sys.stderr)
            return 2
    store = store_for(args.database, "durable")
    table = store.key_table()
    try:
        version = await table.schema_version()
        if version < KEYS_SINCE:
            if args.action != "create":  # nothing to list or revoke: no key was ever made
                return _unknown_key(args.id) if args.action == "revoke" else 0
            if not await _add_key_table(store, args.database, version):
                return 1
        if args.action == "create":
            return await _create_key(table, args.role, args.name)
        if args.action == "list":
            for record in await table.keys():
                print(_describe(record))
            return 0
        revoked = await table.revoke(args.id, time.time())
        if revoked is None:
            return _unknown_key(args.id)
        print(_describe(revoked))
        return 0
    except (stockade.StockadeError, StoreUnavailable) as exc:
        print(f"stockade keys: {exc}", file=sys.stderr)
        return 1
    finally:
        await table.aclose()


async def _add_key_table(store: KeyedStore, database: str, version: int) -> bool:
    """Take the unowned store briefly to add the key table; say what to do if it is owned."""
    try:
        await store.migrate()
    except stockade.StoreInUse:
        print(
            f"stockade keys: {database} has no key table yet (schema version {version}) and "
            "another process owns it: a stockade from before keys. Restart that server with "
            "this stockade (serve adds the table at start), then run this command again.",
            file=sys.stderr,
        )
        return False
    return True


async def _create_key(table: KeyTable, role: str, name: str) -> int:
    record, key = make_key(role, name, time.time())
    await table.add(record)
    print(key)
    print(f"made {record.role} key {record.id}: it is shown this once, store it now; a "
          "running server accepts it within about a second", file=sys.stderr)  # fmt: skip
    return 0


def _unknown_key(key_id: str) -> int:
    print(f"stockade keys: no key {key_id!r}", file=sys.stderr)
    return 1


def _describe(record: KeyRecord) -> str:
    def when(t: float | None) -> str:
        return "-" if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    revoked = "active" if record.revoked_at is None else f"revoked {when(record.revoked_at)}"
    return f"{record.id}  {record.role:<8}  {when(record.created_at)}  {revoked}  {record.name}"


def _check(args: argparse.Namespace) -> int:
    """``stockade check``: each mismatch on a line of its own, then a summary; 0 when the
    books balance, 1 when they do not, 2 when the store cannot be read."""
    from stockade.persistence.audit import check_database
    from stockade.persistence.books import Finding, Tally

    def show(finding: Finding) -> None:
        print(f"mismatch: {finding.detail}", flush=True)

    try:
        report = trio.run(check_database, args.database, Tally(keep=0, on_finding=show))
    except (stockade.StockadeError, StoreUnavailable) as exc:
        print(f"stockade check: {exc}", file=sys.stderr)
        return 2
    checked = (f"checked {report.levels:,} stock levels of {report.products:,} products and "
               f"{report.orders:,} orders ({report.open_holds:,} open holds)")  # fmt: skip
    if report.balanced:
        print(f"{checked}: the books balance")
        return 0
    print(f"{checked}: {report.mismatches:,} mismatch(es)")
    return 1


def _import(args: argparse.Namespace) -> int:
    from stockade.bulk import StockFile, read_file
    from stockade.stockfile import sniff

    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as file:
                data = file.read()
    except OSError as exc:
        print(f"stockade import: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    format = args.format or sniff(args.file, data[:4096])
    parsed: StockFile = read_file(data.splitlines(keepends=True), format)
    del data
    return trio.run(_import_rows, args, parsed)


async def _import_rows(args: argparse.Namespace, parsed: object) -> int:
    """Open the engine (ownership: refused if a server owns the store), check the rows
    against it, and apply them unless one is bad (or ``--skip-bad-rows``)."""
    from stockade.bulk import Progress, StockFile, apply_rows, check_against

    assert isinstance(parsed, StockFile)
    database = args.database
    try:
        store = store_for(database, "durable", standby=False)
        if not store.keeps_history:
            raise stockade.InvalidRequest("import into a stored database: --database "
                                          "sqlite:///FILE or postgresql://...")  # fmt: skip
    except stockade.InvalidRequest as exc:
        print(f"stockade import: {exc}", file=sys.stderr)
        return 2
    bad = list(parsed.bad)
    progress: Progress | None = None
    try:
        async with stockade.open_engine(store=store) as engine:
            bad += await check_against(engine, parsed.rows)
            bad.sort(key=lambda b: b.line)
            for row in bad:
                print(f"line {row.line}: {row.reason}", file=sys.stderr)
            dropped = {b.line for b in bad}
            rows = [row for row in parsed.rows if row.line not in dropped]
            if bad and not args.skip_bad_rows:
                print(f"stockade import: nothing imported: {len(bad):,} bad row(s); fix them, "
                      f"or pass --skip-bad-rows to import the other {len(rows):,}",
                      file=sys.stderr)  # fmt: skip
                return 1
            started = time.perf_counter()
            progress = Progress(sys.stderr, len(rows))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.run)
                try:
                    applied = await apply_rows(engine, rows, on_row=progress.step)
                finally:
                    nursery.cancel_scope.cancel()
            seconds = time.perf_counter() - started
    except stockade.StoreInUse as exc:
        for row in bad:
            print(f"line {row.line}: {row.reason}", file=sys.stderr)
        print(
            f"stockade import: {database} is owned by a running stockade ({exc}): an import "
            "goes through the engine, so stop that server first, or set stock through its "
            "HTTP API (PUT /v1/products/{sku}/locations/{location})",
            file=sys.stderr,
        )
        return 1
    except stockade.StockadeError as exc:
        done = progress.done if progress is not None else 0
        where = f"stopped after {done:,} of {len(parsed.rows):,} rows: " if done else ""
        print(f"stockade import: {where}{exc}", file=sys.stderr)
        return 1
    skipped = f", {len(bad):,} bad row(s) skipped" if bad else ""
    print(f"imported {applied:,} rows into {database} in {seconds:.1f} s{skipped}",
          file=sys.stderr)  # fmt: skip
    return 0


def _export(args: argparse.Namespace) -> int:
    from stockade.bulk import export_file

    try:
        count = trio.run(export_file, args.database, sys.stdout, args.format)
        sys.stdout.flush()
    except (stockade.StockadeError, StoreUnavailable) as exc:
        print(f"stockade export: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader stopped early (export | head): not an error here
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    print(f"exported {count:,} rows", file=sys.stderr)
    return 0


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {port}")
    return port


_seconds = positive_number("seconds")
_count = positive_integer()


def _workers(value: str) -> int:
    from stockade.fronts.supervisor import resolve_workers

    try:
        return resolve_workers(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer or auto, not {value!r}"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stockade", description=stockade.__doc__)
    parser.add_argument("--version", action="version", version=stockade.__version__)
    commands = parser.add_subparsers(dest="command", required=True, title="commands",
                                     metavar="COMMAND")  # fmt: skip
    env = os.environ.get
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database",
        default=env("STOCKADE_DATABASE", "sqlite:///stockade.db"),
        help="sqlite:///file.db or postgresql://... (env STOCKADE_DATABASE)",
    )
    # what the engine's owner takes, whether it serves HTTP too (serve) or not (engine)
    durability = argparse.ArgumentParser(add_help=False)
    durability.add_argument(
        "--durability",
        choices=["durable", "fast"],
        default=env("STOCKADE_DURABILITY", "durable"),
        help="answer after the commit (durable) or at once (fast)",
    )
    serve = commands.add_parser(
        "serve", parents=[database, durability], help="run the HTTP order API"
    )
    serve.add_argument(
        "--engine",
        default=env("STOCKADE_ENGINE", ""),
        metavar="URL[,URL]",
        help="serve as a front of the engine at unix:PATH or tcp://HOST:PORT (several: whichever"
        " owns the store), with no store of its own; secret in STOCKADE_ENGINE_SECRET"
        " (env STOCKADE_ENGINE)",
    )
    serve.add_argument(
        "--engine-timeout",
        type=_seconds,
        default=env("STOCKADE_ENGINE_TIMEOUT", "3"),
        metavar="SECONDS",
        help="a front answers 503 engine-unavailable when the engine has not answered a call"
        " in this long; keep it under --read-timeout (env STOCKADE_ENGINE_TIMEOUT)",
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
        "--read-timeout",
        type=_seconds,
        default=env("STOCKADE_READ_TIMEOUT", "5"),
        metavar="SECONDS",
        help="close a connection whose client stays silent this long while the server waits"
        " for its bytes: the rest of a request, or its next one (env STOCKADE_READ_TIMEOUT)",
    )
    serve.add_argument(
        "--public-holds",
        action="store_true",
        default=env("STOCKADE_PUBLIC_HOLDS", "") in ("1", "true", "yes"),
        help="let anonymous callers place holds and cancel them (env STOCKADE_PUBLIC_HOLDS=1)",
    )
    serve.add_argument(
        "--max-streams",
        type=_count,
        default=env("STOCKADE_MAX_STREAMS", "1000"),
        metavar="N",
        help="event streams open at once, at most; more get 503 (env STOCKADE_MAX_STREAMS)",
    )
    serve.add_argument(
        "--stream-lifetime",
        type=_seconds,
        default=env("STOCKADE_STREAM_LIFETIME", "3600"),
        metavar="SECONDS",
        help="end each event stream after this long; clients reconnect and resume"
        " (env STOCKADE_STREAM_LIFETIME)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=env("STOCKADE_WORKERS", "1"),
        metavar="N|auto",
        help="HTTP front processes on the port, beside one engine process (auto: one per CPU;"
        " 1: engine and HTTP in this one process, the fastest on one core; env STOCKADE_WORKERS)",
    )
    add_engine_flags(serve, os.environ)
    add_public_hold_flags(serve, os.environ)
    engine = commands.add_parser(
        "engine",
        parents=[database, durability],
        help="run an engine alone, serving the engine protocol",
    )
    engine.add_argument(
        "--listen",
        default=env("STOCKADE_ENGINE_LISTEN", "unix:stockade-engine.sock"),
        help="unix:PATH or tcp://HOST:PORT, comma-separated; TCP needs STOCKADE_ENGINE_SECRET"
        " (env STOCKADE_ENGINE_LISTEN)",
    )
    add_engine_flags(engine, os.environ)  # the very flags serve takes (stockade/options.py)
    keys = commands.add_parser("keys", help="make, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[database], help="make a key; print it once")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--name", default="", help="what the key is for")
    actions.add_parser("list", parents=[database], help="list the keys (never their secrets)")
    revoke = actions.add_parser("revoke", parents=[database], help="revoke a key (idempotent)")
    revoke.add_argument("id", help="the key's id (sk_<id>_...)")
    demo = commands.add_parser("demo", help="race buyers for the last units, in memory")
    demo.add_argument("--units", type=int, default=50)
    demo.add_argument("--buyers", type=int, default=400)
    commands.add_parser(
        "check", parents=[database],
        help="check stock, holds and orders against the movements ledger",
        description="Recompute every product and location from the movements ledger and "
        "compare with the stock table, the reserved counts with the open holds, and each "
        "order's status with its movements. Read-only: works whether or not a server owns the "
        "store. Prints each mismatch; exits 0 when the books balance, 1 when they do not, 2 "
        "when the store cannot be read.",
    )  # fmt: skip
    importing = commands.add_parser(
        "import", parents=[database],
        help="set stock in bulk from a CSV or JSON-lines file",
        description="Set stock from FILE (CSV with the header sku,location,on_hand, or JSON "
        'lines {"sku", "location", "on_hand"}; - reads stdin) through the engine, so holds '
        "are respected. Every row is checked first and nothing is imported if any is bad "
        "(each is reported with its line number) unless --skip-bad-rows. Needs the store to "
        "itself: refused while a server owns it.",
    )  # fmt: skip
    importing.add_argument("file", metavar="FILE", help="the stock file (- for stdin)")
    importing.add_argument(
        "--format", choices=FORMATS, default=None,
        help="csv or jsonl (default: by the file's extension, else its content)",
    )  # fmt: skip
    importing.add_argument("--skip-bad-rows", action="store_true",
                           help="import the good rows even if some are bad")  # fmt: skip
    exporting = commands.add_parser(
        "export", parents=[database], help="write the stock table as CSV or JSON lines",
        description="Write every (sku, location, on_hand) to stdout in the format import "
        "reads. Read-only: works whether or not a server owns the store.",
    )  # fmt: skip
    exporting.add_argument("--format", choices=FORMATS, default="csv")
    args = parser.parse_args(argv)
    watch_supervisor()  # started by `serve --workers`: stop if the supervisor is gone
    if args.command == "demo":
        return trio.run(_demo, args.units, args.buyers)
    if args.command == "engine":
        from stockade.engine_process.main import main as engine_main

        options = engine_options(engine, args)
        return engine_main(args.database, args.durability, args.listen, options)
    if args.command == "serve":
        return _serve(args, engine_options(serve, args))
    if args.command == "keys":
        return trio.run(_keys, args)
    runners = {"check": _check, "import": _import, "export": _export}
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
