"""PostgreSQL 14+ through psycopg 3: how to connect, what its errors mean, COPY into a temporary table, then
one set-based statement."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

import polars as pl
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from zonesync.tasks.dialects.column_shapes import ColumnShape
from zonesync.tasks.dialects.core import UTC_TEXT_FORMAT
from zonesync.tasks.dialects.driver_errors import NOWHERE, DriverErrors, LimitReached, RefusedAt
from zonesync.tasks.dialects.postgresql_connecting import PostgresConnecting
from zonesync.tasks.dialects.postgresql_fast_path import holds_none_of
from zonesync.tasks.dialects.postgresql_installing import PostgresInstalling
from zonesync.tasks.dialects.reconciling import Reconciling
from zonesync.tasks.dialects.surface import Claimed, Database, Dialect

# Read without importing this module (see the package): the names its URLs use, the packages its driver raises.
URL_NAMES = ("postgresql", "postgres")
DRIVER_PACKAGES = ("psycopg",)

_COPY_CHUNK = 8 * 1024 * 1024
_TIMESTAMP_FORMAT = "YYYY-MM-DD HH24:MI:SS.US"


def _has_time_zone(column: sa.ColumnElement[Any]) -> bool:
    """Whether a column is timestamptz (its instants are rendered in UTC) rather than a UTC wall clock."""
    return bool(getattr(column.type, "timezone", False))


_CATALOG_SIGNATURE = sa.text(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef, a.attcollation::int, "
    "a.attnum = ANY(i.indkey) FROM pg_attribute a "
    "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
    "WHERE a.attrelid = to_regclass(:table) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
)


# The names PostgreSQL gives outside its structured fields, each before any value: a unique key's columns in the
# DETAIL ("Key (email)=(...) already exists."), the column a COPY line failed in ("COPY t, line 3, column fee: ...").
_KEY_COLUMNS = re.compile(r"^Key \((.*?)\)=\(")
_COPY_COLUMN = re.compile(r"^COPY [^,]+, line \d+, column ([^:]+):")


class PostgresErrors(DriverErrors):
    """SQLSTATEs."""

    driver_errors = (psycopg.Error,)
    # connection exceptions (class 08), serialization failure, deadlock, lock not available, shutdowns, too many
    # connections
    transient_prefixes = ("08", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300")
    deadlock_codes = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected
    lock_timeout_codes = frozenset({"55P03"})
    refusal_codes = {
        "duplicate_key": frozenset({"23505"}),
        "missing_required": frozenset({"23502"}),
        "invalid_value": frozenset({"23514", "22001", "22003", "22007", "22008", "22P02"}),
    }

    def code(self, original: BaseException) -> str | None:
        state = getattr(original, "sqlstate", None)
        return state if isinstance(state, str) else None

    def refused_at(self, original: BaseException) -> RefusedAt:
        """From the error's fields: the column (NOT NULL, COPY), the key's columns (unique), the constraint."""
        diag = getattr(original, "diag", None)
        if diag is None:
            return NOWHERE
        column = diag.column_name or _first(_COPY_COLUMN, diag.context)
        key = _first(_KEY_COLUMNS, diag.message_detail)
        columns = (column,) if column else tuple(key.split(", ")) if key else ()
        return RefusedAt(columns, diag.constraint_name)

    def limit_reached(self, original: BaseException) -> LimitReached | None:
        text, code = str(original).lower(), self.code(original)
        if code == "57014" and "statement timeout" in text:
            return "statement"
        if code == "55P03" and "lock timeout" in text:
            return "lock"
        return None


def _first(pattern: re.Pattern[str], text: str | None) -> str | None:
    match = pattern.search(text) if text else None
    return match[1] if match else None


class PostgresDialect(Dialect):
    """PostgreSQL's reads (connectorx), writes (COPY into a temporary table, then one statement) and checks."""

    name: ClassVar[str] = "postgresql"
    connecting = PostgresConnecting()
    errors = PostgresErrors()
    indexes_partitions: ClassVar[bool] = True

    # -- writing --
    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Timestamps as text with their offset; everything else as polars writes it."""
        return frame.with_columns(
            pl.col(name).dt.strftime(UTC_TEXT_FORMAT + ("%:z" if dtype.time_zone else ""))
            for name, dtype in frame.schema.items()
            if isinstance(dtype, pl.Datetime)
        )

    def bulk_load(self, conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
        """COPY ... FROM STDIN in CSV: strings always quoted so '' and NULL stay apart."""
        preparer = conn.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(name) for name in frame.columns)
        command = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
        buffer = io.BytesIO()  # written once, sent in slices of it: no second copy of the batch's text
        frame.write_csv(buffer, include_header=False, null_value="\\N", quote_style="non_numeric")
        payload = buffer.getbuffer()
        raw: Any = conn.connection.dbapi_connection
        try:
            with raw.cursor() as cursor, cursor.copy(command) as copy:
                for start in range(0, len(payload), _COPY_CHUNK):
                    copy.write(payload[start : start + _COPY_CHUNK])
        finally:
            payload.release()

    def temp_table(self, name: str, like: sa.Table, columns: Sequence[str]) -> sa.Table:
        """An unlogged-by-nature temporary table, dropped at commit."""
        table = super().temp_table(name, like, columns)
        table.dialect_options["postgresql"]["on_commit"] = "DROP"
        return table

    def load_temp(self, conn: Connection, name: str, like: sa.Table, frame: pl.DataFrame) -> sa.Table:
        """Create (dropped at commit, so no stale copy can exist) and COPY."""
        temp = self.temp_table(name, like, frame.columns)
        temp.create(conn)
        self.bulk_load(conn, temp, self.encode(frame))
        return temp

    def analyze_temp(self, conn: Connection, temp: sa.Table) -> None:
        """Autovacuum never sees a temporary table: unanalyzed, a join of 20k tombstones with a 1M-row table was
        planned as a scan of the whole table per batch (measured: deletes at a quarter of the upsert rate)."""
        conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.format_table(temp)}")

    def insert(self, table: sa.Table) -> Any:
        """PostgreSQL's INSERT construct."""
        return pg_insert(table)

    def upsert(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> int:
        """A large batch is COPYed straight into the target when it holds no key of the batch's range (the
        floor's own cost); otherwise — a few rows, keys present, or a concurrent writer first — as the base."""
        if frame.height > self.small_batch and holds_none_of(conn, target, frame, keys):
            savepoint = conn.begin_nested()
            try:
                self.bulk_load(conn, target, self.encode(frame))
            except psycopg.errors.UniqueViolation:
                savepoint.rollback()
            else:
                savepoint.commit()
                return frame.height
        return super().upsert(conn, target, frame, keys)

    # -- claiming --
    def claim(
        self,
        conn: Connection,
        source: sa.Table,
        flag_column: str,
        guard: pl.DataFrame,
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
        within: Sequence[sa.ColumnElement[bool]] = (),
    ) -> Claimed:
        """As the base; its transaction commits without waiting for the WAL flush.

        Safe: it commits after the other zone has the rows, and a flag lost to a crash of the server only means
        the row is sent again (an idempotent upsert); what commits with it (its batch_job count) is lost with it.
        """
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        return super().claim(conn, source, flag_column, guard, keys, dtypes, within)

    # -- exactness --
    def column_shape(self, column: sa.Column[Any]) -> ColumnShape:
        """As SQLAlchemy's types say; char(n) pads a shorter text with blanks (and bpchar equality hides it)."""
        shape = super().column_shape(column)
        if isinstance(column.type, sa.CHAR) and column.type.length:
            return replace(shape, padded=True)
        return shape

    def refusal(self, column: sa.Column[Any], value: Any) -> str | None:
        """As the live column says, and text with a NUL character: PostgreSQL text cannot hold one."""
        if isinstance(value, str) and "\x00" in value:
            return "PostgreSQL text cannot hold a NUL character (\\u0000)"
        return super().refusal(column, value)

    def catalog_signature(self, conn: Connection, table: sa.Table) -> tuple[tuple[Any, ...], ...]:
        """pg_attribute (type with its modifier, NOT NULL, default, collation) and the primary key: ~0.25 ms."""
        name = conn.dialect.identifier_preparer.format_table(table)
        return tuple(tuple(row) for row in conn.execute(_CATALOG_SIGNATURE, {"table": name}))

    # -- transactions --
    _two_phase: bool | None = None

    def supports_two_phase(self) -> bool:
        """Only with `max_prepared_transactions > 0` (the default is 0, and changing it needs a restart)."""
        if self._two_phase is None:
            with self.engine.connect() as conn:
                self._two_phase = int(conn.exec_driver_sql("SHOW max_prepared_transactions").scalar_one()) > 0
        return self._two_phase


class PostgresReconciling(Reconciling):
    """PostgreSQL's canonical text: to_char in UTC, numerics as wide as 1000 digits, md5 built in."""

    max_decimal_precision: ClassVar[int] = 1000

    def prepare_reconcile(self, conn: Connection) -> None:
        """JIT off for this transaction only: compiling the hashing query took a third of its time at 1M rows."""
        conn.exec_driver_sql("SET LOCAL jit = off")

    def timestamp_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """to_char of the UTC wall clock: timestamptz converted, a plain timestamp taken as UTC."""
        moment = sa.func.timezone("UTC", column) if _has_time_zone(column) else column
        return sa.func.to_char(moment, _TIMESTAMP_FORMAT)

    def date_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """to_char(d, 'YYYY-MM-DD')."""
        return sa.func.to_char(column, "YYYY-MM-DD")

    def hash32(self, digest: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """('x' || first 8 hex digits)::bit(32)::bigint: 0 .. 2^32 - 1 (bit(32) to bigint does not sign-extend)."""
        bits = sa.cast(sa.literal("x", sa.String()) + sa.func.substr(digest, 1, 8), BIT(32))
        return sa.cast(bits, sa.BigInteger())

    def moment_bound(self, moment: datetime, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """timestamptz for timestamptz columns; the UTC wall clock for plain timestamps."""
        if _has_time_zone(column):
            return sa.literal(moment, sa.DateTime(timezone=True))
        return sa.literal(moment.replace(tzinfo=None), sa.DateTime())


DATABASE = Database(PostgresDialect, PostgresReconciling(), PostgresInstalling)
