"""``stockade import``, ``export`` and ``check`` as a user runs them, on SQLite and PostgreSQL:
a 100k-row file round-trips; a file with a bad row imports nothing (each bad row named with its
line) unless bad rows are skipped; an import goes through the engine (holds are respected) and
is refused while a server owns the store, while export and check read beside it."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import stockade
from stockade.cli import main
from tests.integration.stores import database_url

KINDS = ["sqlite", "postgresql"]


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``stockade ARGS`` in a thread of this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        saved = sys.stdin
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    return main(list(args))
                except SystemExit as exit:  # argparse refusing the arguments
                    return int(exit.code or 0)
        finally:
            sys.stdin = saved

    code = await trio.to_thread.run_sync(run)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request)


def stock_file(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


async def test_a_100k_row_file_round_trips(tmp_path):
    database = f"sqlite:///{tmp_path / 'stock.db'}"
    text = "sku,location,on_hand\n" + "".join(
        f"sku-{n:06d},default,{n % 997}\n" for n in range(100_000)
    )
    source = stock_file(tmp_path / "stock.csv", text)
    code, _, err = await cli("import", source, "--database", database)
    assert code == 0, err
    assert "imported 100,000 rows" in err
    code, exported, _ = await cli("export", "--database", database)
    assert code == 0 and exported == text
    code, out, _ = await cli("check", "--database", database)
    assert code == 0 and out.endswith("the books balance\n")
    async with stockade.open_engine(database) as engine:
        assert await engine.stock("sku-099999") == stockade.StockLevel("sku-099999", 299, 0, 299)


async def test_json_lines_round_trip_over_locations(database, tmp_path):
    async with stockade.open_engine(database) as engine:
        await engine.set_location("north", priority=1)
    text = "".join(
        f'{{"sku":"s{n}","location":"{where}","on_hand":{n}}}\n'
        for n in range(50) for where in ("default", "north")
    )  # fmt: skip
    source = stock_file(tmp_path / "stock.jsonl", text)
    code, _, err = await cli("import", source, "--database", database)
    assert code == 0, err
    code, exported, _ = await cli("export", "--database", database, "--format", "jsonl")
    assert code == 0 and sorted(exported.splitlines()) == sorted(text.splitlines())
    async with stockade.open_engine(database) as engine:
        assert await engine.stock("s7") == stockade.StockLevel("s7", 14, 0, 14)


async def test_a_file_with_a_bad_row_imports_nothing_unless_bad_rows_are_skipped(
    database, tmp_path
):
    async with stockade.open_engine(database) as engine:
        await engine.set_stock("held", 5)
        await engine.place_order({"held": 3}, hold_for=3600)
    source = stock_file(tmp_path / "stock.csv", "\n".join([
        "sku,location,on_hand",
        "a,default,4",
        "b,nowhere,1",  # 3: unknown location
        "held,default,2",  # 4: below the 3 units a hold reserves
        "c,default,-1",  # 5
        "d,default,x",  # 6
        "e,default,1,2",  # 7
        "f g,default,1",  # 8
        "h,default,1",  # 9, 10: twice
        "h,default,2",
        "held,default,3",  # 11: twice with line 4 (both bad)
        "i,default,7",
    ]) + "\n")  # fmt: skip
    code, out, err = await cli("import", source, "--database", database)
    assert code == 1 and out == ""
    named = [line.split(":")[0] for line in err.splitlines() if line.startswith("line ")]
    assert named == [f"line {n}" for n in (3, 4, 5, 6, 7, 8, 9, 10, 11)]
    assert "line 3: unknown location 'nowhere'" in err
    assert "nothing imported: 9 bad row(s)" in err and "--skip-bad-rows" in err
    async with stockade.open_engine(database) as engine:
        assert not engine.has_product("a") and (await engine.stock("held")).on_hand == 5
    code, _, err = await cli("import", source, "--database", database, "--skip-bad-rows")
    assert code == 0 and "imported 2 rows" in err and "9 bad row(s) skipped" in err
    async with stockade.open_engine(database) as engine:
        assert (await engine.stock("a")).on_hand == 4 and (await engine.stock("i")).on_hand == 7
        assert await engine.stock("held") == stockade.StockLevel("held", 5, 3, 2)


async def test_an_import_respects_holds_and_keeps_the_books_balanced(database, tmp_path):
    async with stockade.open_engine(database) as engine:
        await engine.set_stock("a", 10)
        await engine.place_order({"a": 4}, hold_for=3600)
    source = stock_file(tmp_path / "stock.csv", "sku,location,on_hand\na,default,4\n")
    code, _, err = await cli("import", source, "--database", database)
    assert code == 0, err
    async with stockade.open_engine(database) as engine:
        assert await engine.stock("a") == stockade.StockLevel("a", 4, 4, 0)
    code, out, _ = await cli("check", "--database", database)
    assert code == 0, out


async def test_import_is_refused_while_a_server_owns_the_store_and_export_reads_beside_it(
    database, tmp_path
):
    source = stock_file(tmp_path / "stock.csv", "sku,location,on_hand\nb,default,1\n")
    async with stockade.open_engine(database) as engine:
        await engine.set_stock("a", 3)
        with trio.fail_after(30):  # a PostgreSQL import must not wait as a standby
            code, out, err = await cli("import", source, "--database", database)
        assert code == 1 and out == ""
        assert "is owned by a running stockade" in err and "stop that server" in err
        code, exported, _ = await cli("export", "--database", database)
        assert (code, exported) == (0, "sku,location,on_hand\na,default,3\n")
        code, out, _ = await cli("check", "--database", database)
        assert code == 0 and "the books balance" in out
        await engine.set_stock("a", 4)  # the owner goes on
        assert not engine.has_product("b")


async def test_check_exits_1_naming_each_mismatch_and_2_when_it_cannot_read(tmp_path):
    path = tmp_path / "stock.db"
    async with stockade.open_engine(f"sqlite:///{path}") as engine:
        await engine.set_stock("a", 3)
    import sqlite3

    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE stock SET on_hand = 7")
    conn.close()
    code, out, _ = await cli("check", "--database", f"sqlite:///{path}")
    assert code == 1
    assert out.splitlines() == [
        "mismatch: a at default: on_hand is 7 in the stock table, but its movements add up to 3",
        "checked 1 stock levels of 1 products and 0 orders (0 open holds): 1 mismatch(es)",
    ]
    code, out, err = await cli("check", "--database", f"sqlite:///{tmp_path / 'none.db'}")
    assert (code, out) == (2, "") and "no database at" in err
    code, _, err = await cli("export", "--database", "memory://")
    assert code == 2 and "a stored database is needed" in err


@pytest.mark.parametrize(
    "args",
    [("import", "missing.csv"), ("import", "stock.csv", "--database", "memory://"),
     ("import", "stock.csv", "--format", "xml"), ("export", "--format", "xml")],
)  # fmt: skip
async def test_bad_command_lines_are_refused_and_change_nothing(tmp_path, args):
    stock_file(tmp_path / "stock.csv", "sku,location,on_hand\na,default,1\n")
    database = () if "--database" in args else ("--database", f"sqlite:///{tmp_path / 's.db'}")
    paths = [str(tmp_path / a) if a.endswith(".csv") else a for a in args]
    code, out, err = await cli(*paths, *database)
    assert code == 2 and out == "" and err
    assert not (tmp_path / "s.db").exists()


async def test_import_reads_stdin(tmp_path):
    database = f"sqlite:///{tmp_path / 's.db'}"
    line = b'{"sku": "a", "location": "default", "on_hand": 2}\n'
    code, _, err = await cli("import", "-", "--database", database, stdin=line)
    assert code == 0, err
    async with stockade.open_engine(database) as engine:
        assert (await engine.stock("a")).on_hand == 2


def test_help_lists_every_command_on_a_line_of_its_own():
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run([sys.executable, "-m", "stockade", "--help"], capture_output=True,
                          text=True, timeout=60, check=True, env=env)  # fmt: skip
    listed = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("    ")}
    assert set(listed) == {"serve", "engine", "keys", "demo", "check", "import", "export"}
    assert all(len(line.split()) > 2 for line in listed.values())  # each with its line of help
