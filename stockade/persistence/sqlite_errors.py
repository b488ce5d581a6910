"""What sqlite3's errors mean to stockade: the one translation every SQLite user calls.

* Worth retrying (busy or locked past the timeout, disk full, an I/O error, a file that cannot
  be opened, a statement interrupted): :class:`~stockade.errors.StoreUnavailable`. That is
  ``sqlite3.OperationalError`` and the file system's ``OSError``.
* The file is not a sound database, or the data breaks a constraint:
  :class:`~stockade.errors.CorruptStore`. That is ``IntegrityError``, ``DataError`` and a
  plain ``DatabaseError`` ("file is not a database", "database disk image is malformed").
* A misuse of sqlite3 (``ProgrammingError``, ``InterfaceError``, ``NotSupportedError``,
  ``InternalError``) is a bug in stockade: it is not translated, so it is seen as one.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from stockade.errors import CorruptStore, StoreError, StoreUnavailable

__all__ = ["sqlite_errors", "store_error"]


def store_error(exc: BaseException, where: str = "") -> StoreError | None:
    """The store error ``exc`` means (see the module docstring), or None when it is a bug and
    must stay as it is. ``where`` (a path, say) is put in the message."""
    at = f"{where}: " if where else ""
    if isinstance(exc, sqlite3.OperationalError | OSError):
        return StoreUnavailable(f"SQLite: {at}{exc}")
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError):
        return CorruptStore(f"SQLite refused the data: {at}{exc}")
    if type(exc) is sqlite3.DatabaseError:
        return CorruptStore(f"SQLite: {at}{exc}")  # malformed, or not a database at all
    return None


@contextlib.contextmanager
def sqlite_errors(where: str = "") -> Iterator[None]:
    """Raise sqlite3's (and the file system's) errors inside the block as :func:`store_error`
    says, chained to the original; anything else passes unchanged."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        translated = store_error(exc, where)
        if translated is None:
            raise
        raise translated from exc
