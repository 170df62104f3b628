"""The benchmark's throw-away PostgreSQL database pair: create, fill, reset, verify, drop.

Nothing here is timed. Every statement that is not DDL from SQLAlchemy is composed with psycopg's `sql`
module (identifiers quoted); the data is generated server-side with `generate_series`.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.types import exact_decimal, unicode_text, utc_timestamp
from zonesync.tasks.bookkeeping import tables as bookkeeping
from zonesync.tasks.zones.engines import create_engine, installing_for, parse_url

INTERNAL_COLUMN = "internal_note"


@dataclass(frozen=True)
class DatabasePair:
    """Server URL plus the names of the source (intranet) and target (internet) databases."""

    server: URL
    source_db: str
    target_db: str

    def url(self, database: str) -> URL:
        """SQLAlchemy URL (psycopg driver) of one database on the server."""
        return self.server.set(database=database)

    def conninfo(self, database: str) -> str:
        """libpq connection string for psycopg (holds the password: never print it)."""
        return self.url(database).set(drivername="postgresql").render_as_string(hide_password=False)

    def connect(self, database: str, *, autocommit: bool = False) -> psycopg.Connection:
        """A psycopg connection in UTC (so timestamps render identically in both databases)."""
        return psycopg.connect(self.conninfo(database), autocommit=autocommit, options="-c timezone=UTC")

    def describe(self) -> str:
        """The server URL with the password hidden."""
        return self.server.render_as_string(hide_password=True)


def database_pair(raw_url: str, prefix: str) -> DatabasePair:
    """The pair `<prefix>_src` / `<prefix>_dst` on the server of `raw_url`."""
    server = parse_url(raw_url, setting="--pg-url")
    if server.get_backend_name() != "postgresql":
        raise SystemExit("--pg-url must be a PostgreSQL URL")
    return DatabasePair(make_url(server.render_as_string(hide_password=False)), f"{prefix}_src", f"{prefix}_dst")


def recreate_databases(pair: DatabasePair) -> None:
    """Drop (if left over) and create both databases."""
    drop_databases(pair)
    with pair.connect(pair.server.database or "postgres", autocommit=True) as conn:
        for name in (pair.source_db, pair.target_db):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_databases(pair: DatabasePair) -> None:
    """Drop both databases, closing whatever sessions are still connected."""
    with pair.connect(pair.server.database or "postgres", autocommit=True) as conn:
        for name in (pair.source_db, pair.target_db):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _target_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("payment_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("reference", sa.String(40), nullable=False, unique=True),
        sa.Column("account", sa.String(34), nullable=False),
        sa.Column("amount", exact_decimal(18, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(1), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("customer_name", unicode_text(100)),
        sa.Column("created_at", utc_timestamp(), nullable=False),
        sa.Column("updated_at", utc_timestamp(), nullable=False),
    ]


def source_table(mapping: SyncMapping) -> sa.Table:
    """The intranet table: the target's columns plus one internal column and the flag (12 columns)."""
    return sa.Table(
        mapping.source_table,
        sa.MetaData(),
        *_target_columns(),
        sa.Column(INTERNAL_COLUMN, sa.Text, nullable=False),
        sa.Column(mapping.flag_column, sa.Boolean, nullable=False, server_default=sa.false()),
    )


def target_table(mapping: SyncMapping) -> sa.Table:
    """The internet table: the 10 columns of the mapping's model, same key and unique constraint."""
    table = sa.Table(mapping.target_table, sa.MetaData(), *_target_columns())
    assert tuple(table.c.keys()) == mapping.target_columns, "bench tables and model disagree"
    return table


def create_tables(
    pair: DatabasePair, mapping: SyncMapping, *, pending_index: bool, fillfactor: int | None = None
) -> str | None:
    """Create the mapping's tables (and the bookkeeping tables); return the pending-index DDL used, if any."""
    source_engine = create_engine(pair.url(pair.source_db))
    target_engine = create_engine(pair.url(pair.target_db))
    try:
        source = source_table(mapping)
        if fillfactor is not None:
            source.dialect_options["postgresql"]["with"] = {"fillfactor": fillfactor}
        source.create(source_engine)
        target_table(mapping).create(target_engine)
        bookkeeping.create_bookkeeping(source_engine)
        ddl = None
        if pending_index:
            ddl = installing_for(source_engine).recommended_index(source, mapping.source_keys, mapping.flag_column)
            with source_engine.begin() as conn:
                conn.exec_driver_sql(ddl)
        return ddl
    finally:
        source_engine.dispose()
        target_engine.dispose()


_GENERATE = """
INSERT INTO {table} (payment_id, reference, account, amount, currency, status, channel, customer_name,
                     created_at, updated_at, internal_note, {flag})
SELECT g,
       'PAY-' || lpad(g::text, 12, '0'),
       'KH' || lpad(((g * 7919) % 100000000)::text, 16, '0'),
       (1 + (g * 104729) % 5000000) / 100.0,
       (ARRAY['USD', 'KHR', 'EUR', 'THB'])[1 + g % 4],
       (ARRAY['S', 'S', 'S', 'F', 'P'])[1 + g % 5],
       (ARRAY['ABA', 'ACLEDA', 'WING', 'CARD', 'KHQR'])[1 + (g / 7) % 5],
       CASE WHEN g % 50 = 0 THEN NULL
            WHEN g % 7 = 0 THEN 'សុខ ចាន់ ' || g
            ELSE 'Customer Nguyễn ' || g END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' + (g % 999983) * interval '1 microsecond',
       timestamptz '2024-01-01 00:05:00+00' + g * interval '1 second' + (g % 999979) * interval '1 microsecond',
       'internal ' || md5(g::text),
       false
FROM generate_series(1::bigint, {rows}) AS g
"""


def generate_rows(pair: DatabasePair, mapping: SyncMapping, rows: int) -> None:
    """Fill the source table with `rows` unsynced rows, then VACUUM ANALYZE it."""
    statement = sql.SQL(_GENERATE).format(
        table=sql.Identifier(mapping.source_table), flag=sql.Identifier(mapping.flag_column), rows=sql.Literal(rows)
    )
    with pair.connect(pair.source_db) as conn:
        conn.execute(statement)
    _settle(pair, pair.source_db, mapping.source_table)


def _settle(pair: DatabasePair, database: str, table: str) -> None:
    """VACUUM ANALYZE a table and CHECKPOINT, so no earlier write is paid for by the next timed run."""
    with pair.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")


def reset_full(pair: DatabasePair, mapping: SyncMapping) -> None:
    """Empty the target and mark every source row unsynced: the start state of a full sync."""
    with pair.connect(pair.target_db) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(mapping.target_table)))
    flag = sql.Identifier(mapping.flag_column)
    with pair.connect(pair.source_db) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET {flag} = false WHERE {flag}").format(sql.Identifier(mapping.source_table), flag=flag)
        )
    _settle(pair, pair.target_db, mapping.target_table)
    _settle(pair, pair.source_db, mapping.source_table)


def flag_all(pair: DatabasePair, mapping: SyncMapping) -> None:
    """Mark every source row synced (what a completed sync leaves behind)."""
    statement = sql.SQL("UPDATE {} SET {} = true").format(
        sql.Identifier(mapping.source_table), sql.Identifier(mapping.flag_column)
    )
    with pair.connect(pair.source_db) as conn:
        conn.execute(statement)


def reset_incremental(pair: DatabasePair, mapping: SyncMapping, every: int) -> int:
    """With everything synced, touch and unflag every `every`-th row (1 % by default); return how many."""
    flag = sql.Identifier(mapping.flag_column)
    statement = sql.SQL("UPDATE {} SET {flag} = false, updated_at = now() WHERE payment_id % {every} = 0")
    with pair.connect(pair.source_db) as conn:
        changed = conn.execute(
            statement.format(sql.Identifier(mapping.source_table), flag=flag, every=sql.Literal(every))
        ).rowcount
    _settle(pair, pair.source_db, mapping.source_table)
    return changed


@dataclass(frozen=True)
class Fingerprint:
    """Row count and an order-independent hash of every row's text (source projected to target columns)."""

    rows: int
    digest: int


def _fingerprint(pair: DatabasePair, database: str, table: str, columns: list[str]) -> Fingerprint:
    row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
    query = sql.SQL("SELECT count(*), coalesce(sum(hashtextextended({row}, 0)::numeric), 0) FROM {table}").format(
        row=row, table=sql.Identifier(table)
    )
    with pair.connect(database) as conn:
        count, digest = conn.execute(query).fetchone()  # type: ignore[misc]
    return Fingerprint(int(count), int(digest))


@dataclass(frozen=True)
class Verification:
    """Whether a run left both zones as a correct sync must: target equal to source, every row flagged."""

    source: Fingerprint
    target: Fingerprint
    unsynced: int

    @property
    def ok(self) -> bool:
        """Same rows and values on both sides and nothing left unflagged."""
        return self.source == self.target and self.unsynced == 0


def verify(pair: DatabasePair, mapping: SyncMapping) -> Verification:
    """Compare the source (projected through the mapping) with the target and count unflagged rows."""
    source = _fingerprint(pair, pair.source_db, mapping.source_table, [c.source for c in mapping.columns])
    target = _fingerprint(pair, pair.target_db, mapping.target_table, list(mapping.target_columns))
    query = sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT TRUE").format(
        sql.Identifier(mapping.source_table), sql.Identifier(mapping.flag_column)
    )
    with pair.connect(pair.source_db) as conn:
        unsynced = int(conn.execute(query).fetchone()[0])  # type: ignore[index]
    return Verification(source, target, unsynced)


def table_bytes(pair: DatabasePair, mapping: SyncMapping) -> dict[str, int]:
    """Total on-disk size (heap + indexes) of the source and target tables."""
    sizes = {}
    for zone, database, table in (
        ("source", pair.source_db, mapping.source_table),
        ("target", pair.target_db, mapping.target_table),
    ):
        with pair.connect(database) as conn:
            sizes[zone] = int(conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0])  # type: ignore[index]
    return sizes
