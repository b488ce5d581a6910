"""The one translation of sqlite3's errors: a table of what each means, and the SQLite users
(the store, the key table, the books check) agreeing on a file that is not a database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stockade.errors import CorruptStore, StoreError, StoreUnavailable
from stockade.persistence.audit import check_database
from stockade.persistence.books import Tally
from stockade.persistence.keys import SQLiteKeys
from stockade.persistence.sqlite import SQLiteStore
from stockade.persistence.sqlite_errors import sqlite_errors, store_error

TABLE: list[tuple[BaseException, type[StoreError] | None]] = [
    (sqlite3.OperationalError("database is locked"), StoreUnavailable),
    (sqlite3.OperationalError("disk I/O error"), StoreUnavailable),
    (sqlite3.OperationalError("unable to open database file"), StoreUnavailable),
    (sqlite3.OperationalError("interrupted"), StoreUnavailable),
    (OSError(28, "No space left on device"), StoreUnavailable),
    (sqlite3.IntegrityError("UNIQUE constraint failed: orders.id"), CorruptStore),
    (sqlite3.DataError("string or blob too big"), CorruptStore),
    (sqlite3.DatabaseError("file is not a database"), CorruptStore),
    (sqlite3.DatabaseError("database disk image is malformed"), CorruptStore),
    (sqlite3.ProgrammingError("Cannot operate on a closed database."), None),
    (sqlite3.InterfaceError("bad parameter"), None),
    (sqlite3.NotSupportedError("not supported"), None),
    (sqlite3.InternalError("internal"), None),
    (sqlite3.Warning("warning"), None),
    (ValueError("not sqlite's"), None),
]


@pytest.mark.parametrize(("error", "meaning"), TABLE, ids=[repr(e) for e, _ in TABLE])
def test_each_error_means_one_thing(error: BaseException, meaning: type[StoreError] | None) -> None:
    translated = store_error(error, "stock.db")
    if meaning is None:
        assert translated is None
    else:
        assert type(translated) is meaning
        assert "stock.db" in str(translated) and str(error) in str(translated)


@pytest.mark.parametrize(("error", "meaning"), TABLE, ids=[repr(e) for e, _ in TABLE])
def test_the_block_raises_the_translation_chained(
    error: BaseException, meaning: type[StoreError] | None
) -> None:
    with pytest.raises(BaseException) as raised, sqlite_errors():
        raise error
    if meaning is None:
        assert raised.value is error  # a bug stays as it is
    else:
        assert type(raised.value) is meaning and raised.value.__cause__ is error


@pytest.fixture
def not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "stock.db"
    path.write_bytes(b"this is no SQLite file, not even its header" * 200)
    return str(path)


async def test_store_keys_and_books_agree_on_a_file_that_is_not_a_database(
    not_a_database: str,
) -> None:
    with pytest.raises(CorruptStore):
        await SQLiteStore(not_a_database).load(0.0)
    with pytest.raises(CorruptStore):
        await SQLiteKeys(not_a_database).keys()
    with pytest.raises(CorruptStore):
        await check_database(f"sqlite:///{not_a_database}", Tally(keep=0))
