"""The SQL schema, as numbered migrations shared by the SQLite and PostgreSQL stores.

``stockade_state.schema_version`` records how many migrations a database has had. A store
applies the missing ones at start-up, in order, in the same transaction that reads the version,
after it has taken ownership of the store (so two instances never migrate at once). A database
newer than this stockade is refused rather than guessed at. Never edit a released migration:
append a new one.
"""

from __future__ import annotations

from stockade.errors import IncompatibleStore

__all__ = [
    "INIT_STATE",
    "KEYS_SINCE",
    "RETURNS_SINCE",
    "RULES_SINCE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATE_TABLE",
    "migrations_after",
]

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

MIGRATIONS.append(
    [  # 3: stock per location, locations and channels, order allocations, the movements ledger
        # by location, idempotency keys of every kind, indexes for the order history
        """CREATE TABLE stock (
            sku TEXT NOT NULL,
            location TEXT NOT NULL,
            on_hand BIGINT NOT NULL CHECK (on_hand >= 0),
            reserved BIGINT NOT NULL CHECK (reserved >= 0 AND reserved <= on_hand),
            PRIMARY KEY (sku, location)
        )""",
        "INSERT INTO stock SELECT sku, 'default', on_hand, reserved FROM products",
        "DROP TABLE products",
        """CREATE TABLE locations (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            priority BIGINT NOT NULL,
            active BOOLEAN NOT NULL
        )""",
        "CREATE TABLE channels (id TEXT PRIMARY KEY, locations TEXT NOT NULL)",
        "ALTER TABLE orders ADD COLUMN allocations TEXT",  # NULL: every unit at 'default'
        "ALTER TABLE orders ADD COLUMN channel TEXT",
        "ALTER TABLE orders ADD COLUMN location TEXT",
        "CREATE INDEX orders_by_created ON orders (created_at, id)",
        "CREATE INDEX orders_by_status ON orders (status, created_at, id)",
        """CREATE TABLE movements_by_sku (
            seq BIGINT NOT NULL,
            sku TEXT NOT NULL,
            location TEXT NOT NULL,
            kind TEXT NOT NULL,
            order_id TEXT,
            d_on_hand BIGINT NOT NULL,
            d_reserved BIGINT NOT NULL,
            reason TEXT,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (sku, seq, location)
        )""",
        """INSERT INTO movements_by_sku SELECT seq, sku, 'default', kind, order_id, d_on_hand,
            d_reserved, reason, at FROM movements""",
        "DROP TABLE movements",
        "ALTER TABLE movements_by_sku RENAME TO movements",
        """CREATE TABLE idempotency_keys (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            order_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL
        )""",
        """INSERT INTO idempotency_keys
            SELECT idempotency_key, 'place', id, lines, created_at FROM orders
            WHERE idempotency_key IS NOT NULL ORDER BY created_at DESC
            ON CONFLICT (key) DO NOTHING""",
        "CREATE INDEX idempotency_keys_by_time ON idempotency_keys (at)",
    ]
)

MIGRATIONS.append(
    [  # 4: the change feed's outbox, written in the same transaction as the changes
        """CREATE TABLE events (
            seq BIGINT PRIMARY KEY,
            type TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            sku TEXT,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX events_by_at ON events (at)",
        "ALTER TABLE stockade_state ADD COLUMN last_event_seq BIGINT NOT NULL DEFAULT 0",
    ]
)

MIGRATIONS.append(
    [  # 5: webhook subscriptions and how far each has delivered the change feed
        """CREATE TABLE webhooks (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            types TEXT,
            secret TEXT NOT NULL,
            delivered_seq BIGINT NOT NULL CHECK (delivered_seq >= 0),
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            failing BOOLEAN NOT NULL,
            last_error TEXT,
            last_error_at DOUBLE PRECISION
        )""",
    ]
)

MIGRATIONS.append(
    [  # 6: partial returns (design.md §13): units returned and written off per sku, as JSON;
        # NULL: none (every order written before)
        "ALTER TABLE orders ADD COLUMN returned TEXT",
        "ALTER TABLE orders ADD COLUMN written_off TEXT",
    ]
)

MIGRATIONS.append(
    [  # 7: the change feed kept in pages of events (stockade/persistence/pages.py), cheaper to
        # write than a row per event; the events so far become pages of one event each. No
        # index on time: pruning finds the oldest pages through the primary key.
        """CREATE TABLE event_pages (
            last_seq BIGINT PRIMARY KEY,
            first_seq BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            type TEXT,
            sku TEXT,
            meta TEXT,
            data TEXT NOT NULL,
            CHECK (first_seq <= last_seq),
            CHECK ((meta IS NULL) = (type IS NOT NULL))
        )""",
        """INSERT INTO event_pages (last_seq, first_seq, at, type, sku, meta, data)
            SELECT seq, seq, at, type, sku, NULL, data FROM events""",
        "DROP TABLE events",
    ]
)

MIGRATIONS.append(
    [  # 8: broker sinks (design.md §14) and how far each has published the change feed;
        # how many events one webhook POST carries
        """CREATE TABLE sinks (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            types TEXT,
            delivered_seq BIGINT NOT NULL CHECK (delivered_seq >= 0),
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            failing BOOLEAN NOT NULL,
            last_error TEXT,
            last_error_at DOUBLE PRECISION
        )""",
        "ALTER TABLE webhooks ADD COLUMN batch BIGINT NOT NULL DEFAULT 1 CHECK (batch >= 1)",
    ]
)

MIGRATIONS.append(
    [  # 9: orders name their customer, reference and metadata; products' sale rules and the
        # live per_customer counts (design.md §13)
        "ALTER TABLE orders ADD COLUMN customer TEXT",
        "ALTER TABLE orders ADD COLUMN reference TEXT",
        "ALTER TABLE orders ADD COLUMN metadata TEXT",
        "CREATE INDEX orders_by_customer ON orders (customer, created_at, id)",
        """CREATE TABLE product_rules (
            sku TEXT PRIMARY KEY,
            per_order BIGINT,
            per_customer BIGINT,
            opens_at DOUBLE PRECISION,
            closes_at DOUBLE PRECISION,
            low_stock_at BIGINT,
            counting_since DOUBLE PRECISION
        )""",
        """CREATE TABLE customer_counts (
            sku TEXT NOT NULL,
            order_id TEXT NOT NULL,
            customer TEXT NOT NULL,
            units BIGINT NOT NULL CHECK (units > 0),
            PRIMARY KEY (sku, order_id)
        )""",
    ]
)

#: Makes the one state row of a new database (the columns named: later migrations add more).
INIT_STATE = (
    "INSERT INTO stockade_state (id, schema_version, last_seq, owner_epoch) "
    "VALUES (1, 0, 0, 0) ON CONFLICT (id) DO NOTHING"
)

SCHEMA_VERSION = len(MIGRATIONS)

#: The first schema version with the ``api_keys`` table.
KEYS_SINCE = 2
#: The first schema version with the orders' ``returned`` and ``written_off`` columns.
RETURNS_SINCE = 6
#: The first schema version with the orders' customer fields and the sale rules' tables.
RULES_SINCE = 9


def migrations_after(version: int) -> list[str]:
    """The statements that bring a database at ``version`` up to :data:`SCHEMA_VERSION`.
    Raises IncompatibleStore for a database newer than this code."""
    if version > SCHEMA_VERSION:
        raise IncompatibleStore(
            f"the database has schema version {version}, newer than this stockade "
            f"({SCHEMA_VERSION}): upgrade stockade before opening it"
        )
    return [statement for step in MIGRATIONS[version:] for statement in step]
