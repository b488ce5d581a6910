"""API keys in real stores (SQLite and PostgreSQL): stored hashed, managed by ``stockade keys``
whether or not a server owns the store, and migration 2 over a database made at version 1."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio

import stockade
from stockade._open import open_engine_and_store
from stockade.api.app import ApiSettings, create_app
from stockade.cli import main
from stockade.persistence.keys import KeyedStore
from stockade.persistence.schema import SCHEMA_VERSION
from tests.legacy import version_1_statements

TOKEN = "keys-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


async def cli(*args: str) -> tuple[int, str, str]:
    """``stockade keys ARGS`` in a thread of this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                return main(["keys", *args])
            except SystemExit as exit:  # argparse refusing the arguments
                return int(exit.code or 0)

    code = await trio.to_thread.run_sync(run)
    return code, out.getvalue(), err.getvalue()


def secret_of(key: str) -> str:
    return key.split("_", 2)[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stock.db'}"
    dsn: str = request.getfixturevalue("postgres_dsn")
    return dsn


async def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows read straight from the database, beside whatever owns it."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    pg = await trio.to_thread.run_sync(lambda: _pg_rows(url, sql))
    return pg


def _pg_rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncio

    async def read() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(read())


async def execute(url: str, *statements: str) -> None:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            for statement in statements:
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
        return
    for statement in statements:
        await trio.to_thread.run_sync(_pg_rows, url, statement)


@contextlib.asynccontextmanager
async def owned_by_an_old_stockade(url: str) -> AsyncIterator[None]:
    """Hold the store's ownership lock as a server of an earlier stockade would."""
    if url.startswith("sqlite:///"):
        fd = os.open(url[len("sqlite:///") :] + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            os.close(fd)
        return
    import asyncio

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(url))
    try:
        loop.run_until_complete(conn.execute("SELECT pg_advisory_lock(hashtext(current_schema()))"))
        yield
    finally:
        loop.run_until_complete(conn.close())
        loop.close()


async def a_version_1_database(url: str) -> list[stockade.Order]:
    """A store as stockade made it before keys (migration 1 only), with orders of each kind."""
    statements, orders = version_1_statements()
    await execute(url, *statements)
    assert await rows(url, "SELECT schema_version FROM stockade_state") == [(1,)]
    return orders


# -- stored hashed --------------------------------------------------------------------------


async def test_keys_are_stored_as_hashes_only(url, tmp_path):
    async with open_engine_and_store(url) as (engine, store):
        assert isinstance(store, KeyedStore)
        app = create_app(engine, ApiSettings(admin_token=TOKEN, log_requests=False),
                         store.key_table())  # fmt: skip
        async with app.test_app() as test_app:
            client = test_app.test_client()
            made = await client.post("/v1/keys", json={"role": "service"}, headers=ADMIN)
            over_http = (await made.get_json())["key"]
            code, by_cli, _ = await cli("create", "--role", "merchant", "--database", url)
            assert code == 0
            await app.config["STOCKADE_KEYS"].refresh()
            await engine.set_stock("a", 1)
            cli_key = {"Authorization": f"Bearer {by_cli.strip()}"}
            bought = await client.post(
                "/v1/orders", json={"lines": [{"sku": "a", "qty": 1}]}, headers=cli_key
            )
            assert bought.status_code == 201  # the CLI's key works on this server
        await app.config["STOCKADE_KEYS"].table.aclose()
    stored = await rows(url, "SELECT id, name, role, hash, created_at, revoked_at FROM api_keys")
    assert len(stored) == 2
    for key in (over_http, by_cli.strip()):
        (row,) = [r for r in stored if key.startswith(f"sk_{r[0]}_")]
        assert row[3] == hashlib.sha256(secret_of(key).encode()).hexdigest()
        assert all(secret_of(key) not in str(value) for value in row)
        for path in tmp_path.rglob("*"):  # SQLite's file, WAL and shared memory, byte for byte
            if path.is_file():
                assert secret_of(key).encode() not in path.read_bytes(), path


# -- the CLI --------------------------------------------------------------------------------


async def test_the_cli_on_a_store_nobody_serves(url, tmp_path):
    code, out, _ = await cli("list", "--database", url)
    assert (code, out) == (0, "")
    code, _, err = await cli("revoke", "0123456789abcdef", "--database", url)
    assert code == 1 and "no key" in err
    if url.startswith("sqlite"):
        assert not (tmp_path / "stock.db").exists()  # reading made nothing
    code, out, err = await cli("create", "--role", "service", "--name", "shop", "--database", url)
    assert code == 0 and "shown this once" in err
    key = out.strip()
    key_id = key.split("_")[1]
    code, out, _ = await cli("list", "--database", url)
    assert code == 0 and key_id in out and "service" in out and "shop" in out
    assert "active" in out and secret_of(key) not in out
    code, out, _ = await cli("revoke", key_id, "--database", url)
    assert code == 0 and "revoked" in out
    code, again, _ = await cli("revoke", key_id, "--database", url)
    assert code == 0 and again == out  # idempotent: revoked once, at that time
    assert await rows(url, "SELECT schema_version FROM stockade_state") == [(SCHEMA_VERSION,)]
    async with stockade.open_engine(url) as engine:  # a server can take the store afterwards
        await engine.set_stock("a", 1)


async def test_the_cli_beside_an_engine_that_owns_the_store(url):
    async with open_engine_and_store(url) as (engine, store):
        await engine.set_stock("a", 1000)
        placed = 0

        async def buy() -> None:
            nonlocal placed
            for _ in range(100):
                await engine.place_order({"a": 1})
                placed += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(buy)
            made = [await cli("create", "--role", "service", "--database", url) for _ in "abc"]
        assert [code for code, _, _ in made] == [0, 0, 0] and placed == 100
        assert isinstance(store, KeyedStore)
        table = store.key_table()
        try:
            assert len(await table.keys()) == 3
        finally:
            await table.aclose()
        assert (await cli("revoke", made[0][1].split("_")[1], "--database", url))[0] == 0
        assert (await engine.place_order({"a": 1})).status == "confirmed"  # the owner goes on
    assert await rows(url, "SELECT count(*) FROM orders") == [(101,)]


async def test_a_version_1_store_opens_after_the_migration_with_every_order(url):
    orders = await a_version_1_database(url)
    async with stockade.open_engine(url) as engine:
        for order in orders:
            assert await engine.get_order(order.id) == order
        assert await engine.stock("a") == stockade.StockLevel("a", 8, 1, 7)
        replay = await engine.place_order({"a": 1}, hold_for=3600, idempotency_key="cart-1")
        assert replay.id == orders[0].id
    assert await rows(url, "SELECT schema_version FROM stockade_state") == [(SCHEMA_VERSION,)]
    assert await rows(url, "SELECT count(*) FROM api_keys") == [(0,)]


async def test_the_cli_adds_the_key_table_to_a_version_1_store_nobody_owns(url):
    orders = await a_version_1_database(url)
    code, out, _ = await cli("create", "--role", "merchant", "--database", url)
    assert code == 0 and out.startswith("sk_")
    assert await rows(url, "SELECT schema_version FROM stockade_state") == [(SCHEMA_VERSION,)]
    async with stockade.open_engine(url) as engine:
        assert [await engine.get_order(o.id) for o in orders] == orders


async def test_the_cli_says_what_to_do_when_an_old_server_owns_a_version_1_store(url):
    await a_version_1_database(url)
    async with owned_by_an_old_stockade(url):
        code, out, err = await cli("create", "--role", "service", "--database", url)
    assert code == 1 and out == ""
    assert "no key table" in err and "Restart that server" in err
    assert await rows(url, "SELECT schema_version FROM stockade_state") == [(1,)]


@pytest.mark.parametrize(
    "args",
    [
        ("create", "--role", "admin"),
        ("create", "--role", "service", "--name", "x" * 201),
        ("create", "--role", "service", "--name", "a\nb"),
        ("create", "--role", "service", "--database", "memory://"),
        ("create", "--role", "service", "--database", "mysql://x"),
        ("revoke",),
    ],
)
async def test_bad_cli_input_is_refused_and_makes_nothing(tmp_path, args):
    database = () if "--database" in args else ("--database", f"sqlite:///{tmp_path / 'k.db'}")
    code, out, err = await cli(*args, *database)
    assert code == 2 and out == "" and err
    assert list(tmp_path.iterdir()) == []


def test_the_cli_runs_as_a_command(tmp_path: Path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'stock.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "stockade", "keys", "create", "--role", "service",
         "--database", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("sk_") and done.stdout.count("\n") == 1
