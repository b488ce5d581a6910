"""The SQL schema, as numbered migrations shared by the SQLite and PostgreSQL stores.

``stockade_state.schema_version`` records how many migrations a database has had. A store
applies the missing ones at start-up, in order, in the same transaction that reads the version,
after it has taken ownership of the store (so two instances never migrate at once). A database
newer than this stockade is refused rather than guessed at. Never edit a released migration:
append a new one.
"""

from __future__ import annotations

from stockade.errors import IncompatibleStore

__all__ = ["KEYS_SINCE", "MIGRATIONS", "SCHEMA_VERSION", "STATE_TABLE", "migrations_after"]

#: Created before anything else, so the version can be read; version 0 is an empty database.
STATE_TABLE = """CREATE TABLE IF NOT EXISTS stockade_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    last_seq BIGINT NOT NULL,
    owner_epoch BIGINT NOT NULL
)"""

#: MIGRATIONS[n] takes a database from version n to n + 1 (both dialects read these types).
MIGRATIONS: list[list[str]] = [
    [  # 1: products, orders, the movements ledger
        """CREATE TABLE products (
            sku TEXT PRIMARY KEY,
            on_hand BIGINT NOT NULL CHECK (on_hand >= 0),
            reserved BIGINT NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand)
        )""",
        """CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            lines TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            idempotency_key TEXT
        )""",
        """CREATE TABLE movements (
            seq BIGINT NOT NULL,
            sku TEXT NOT NULL,
            order_id TEXT,
            kind TEXT NOT NULL,
            d_on_hand BIGINT NOT NULL,
            d_reserved BIGINT NOT NULL,
            reason TEXT,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (seq, sku)
        )""",
    ],
    [  # 2: API keys (design.md §10): only a hash of each key's secret is kept
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('service', 'merchant')),
            hash TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)

#: The first schema version with the ``api_keys`` table.
KEYS_SINCE = 2


def migrations_after(version: int) -> list[str]:
    """The statements that bring a database at ``version`` up to :data:`SCHEMA_VERSION`.
    Raises IncompatibleStore for a database newer than this code."""
    if version > SCHEMA_VERSION:
        raise IncompatibleStore(
            f"the database has schema version {version}, newer than this stockade "
            f"({SCHEMA_VERSION}): upgrade stockade before opening it"
        )
    return [statement for step in MIGRATIONS[version:] for statement in step]
