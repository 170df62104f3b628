"""PostgreSQL: COPY into a temporary table, then one set-based statement."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import polars as pl
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from zonesync.tasks.dialects.base import UTC_TEXT_FORMAT, Dialect, WritersTrigger

_COPY_CHUNK = 8 * 1024 * 1024
_TIMESTAMP_FORMAT = "YYYY-MM-DD HH24:MI:SS.US"


def _has_time_zone(column: sa.ColumnElement[Any]) -> bool:
    """Whether a column is timestamptz (its instants are rendered in UTC) rather than a UTC wall clock."""
    return bool(getattr(column.type, "timezone", False))


class PostgresDialect(Dialect):
    """PostgreSQL 14+ through psycopg 3."""

    name: ClassVar[str] = "postgresql"
    max_decimal_precision: ClassVar[int] = 1000

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

    def supports_two_phase(self) -> bool:
        """Only with `max_prepared_transactions > 0` (the default is 0, and changing it needs a restart)."""
        if self._two_phase is None:
            with self.engine.connect() as conn:
                self._two_phase = int(conn.exec_driver_sql("SHOW max_prepared_transactions").scalar_one()) > 0
        return self._two_phase

    _two_phase: bool | None = None

    def refusal(self, column: sa.Column[Any], value: Any) -> str | None:
        """Text with a NUL character: PostgreSQL text cannot hold one."""
        if isinstance(value, str) and "\x00" in value:
            return "PostgreSQL text cannot hold a NUL character (\\u0000)"
        return None

    def table_advice(self, table: sa.Table) -> list[str]:
        """The alternative for tables synced mostly in bulk: in-place (HOT) flag updates.

        Any index that mentions the flag column, the partial index included, makes every flag update write
        new index entries; free space on each page lets it stay on the page instead. Measured on 1M rows:
        the sync took 10.1 s with this instead of 14.1 s with the partial index, but reading a small
        backlog then scans the table.
        """
        name = self.engine.dialect.identifier_preparer.format_table(table)
        return [
            "-- or, for a table synced mostly in bulk: no pending index, and in-place flag updates:",
            f"-- ALTER TABLE {name} SET (fillfactor = 70); VACUUM FULL {name};",
        ]

    def upsert(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> int:
        """A large batch is COPYed straight into the target when it holds no key of the batch's range (the
        floor's own cost); otherwise — a few rows, keys present, or a concurrent writer first — as the base."""
        if frame.height > self.small_batch and self._box_is_empty(conn, target, frame, keys):
            savepoint = conn.begin_nested()
            try:
                self.bulk_load(conn, target, self.encode(frame))
            except psycopg.errors.UniqueViolation:
                savepoint.rollback()
            else:
                savepoint.commit()
                return frame.height
        return super().upsert(conn, target, frame, keys)

    def _box_is_empty(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> bool:
        """No target row within the min..max of each key column (integer and date keys only: text keys
        sort by collation, which polars does not know)."""
        if not all(frame.schema[key].is_integer() or frame.schema[key] == pl.Date for key in keys):
            return False
        bounds = frame.select(*(pl.col(k).min().alias(f"{k}_min") for k in keys), *(pl.col(k).max() for k in keys))
        low, high = bounds.row(0)[: len(keys)], bounds.row(0)[len(keys) :]
        box = [target.c[key].between(low[i], high[i]) for i, key in enumerate(keys)]
        return conn.execute(sa.select(sa.literal(1)).select_from(target).where(*box).limit(1)).first() is None

    def claim(
        self,
        conn: Connection,
        source: sa.Table,
        flag_column: str,
        guard: pl.DataFrame,
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
    ) -> pl.Series | None:
        """As the base; its transaction commits without waiting for the WAL flush.

        Safe: it commits after the other zone has the rows, and a flag lost to a crash of the server only means
        the row is sent again (an idempotent upsert); what commits with it (its batch_job count) is lost with it.
        """
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        return super().claim(conn, source, flag_column, guard, keys, dtypes)

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

    def writers_trigger(self, spec: WritersTrigger) -> list[str]:
        """A PL/pgSQL function run BEFORE UPDATE FOR EACH ROW, which corrects NEW."""
        quote = self.engine.dialect.identifier_preparer.quote
        changed = " OR ".join(f"OLD.{quote(c)} IS DISTINCT FROM NEW.{quote(c)}" for c in spec.watched)
        flag = quote(spec.flag)
        body = [f"IF OLD.{flag} AND NEW.{flag} THEN NEW.{flag} := false; END IF;"]
        if spec.version and spec.version_kind:
            version = quote(spec.version)
            utc, later = "clock_timestamp() AT TIME ZONE 'UTC'", f"OLD.{version} + interval '1 microsecond'"
            bumped = {
                "integer": f"OLD.{version} + 1",
                "timestamptz": f"GREATEST(clock_timestamp(), {later})",
                "timestamp": f"GREATEST({utc}, {later})",
                "text_timestamp": f"to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00'",
            }[spec.version_kind]
            same = f"NEW.{version} IS NOT DISTINCT FROM OLD.{version}"
            body.append(f"IF {same} THEN NEW.{version} := {bumped}; END IF;")
        table = self.engine.dialect.identifier_preparer.format_table(spec.table)
        function = quote(spec.name)
        return [
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger AS $$ BEGIN IF {changed} THEN "
            f"{' '.join(body)} END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            f"DROP TRIGGER IF EXISTS {function} ON {table}",
            f"CREATE TRIGGER {function} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()",
        ]

    def insert(self, table: sa.Table) -> Any:
        """PostgreSQL's INSERT construct."""
        return pg_insert(table)

    def timestamp_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """to_char of the UTC wall clock: timestamptz converted, a plain timestamp taken as UTC."""
        moment = sa.func.timezone("UTC", column) if _has_time_zone(column) else column
        return sa.func.to_char(moment, _TIMESTAMP_FORMAT)

    def date_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """to_char(d, 'YYYY-MM-DD')."""
        return sa.func.to_char(column, "YYYY-MM-DD")

    def prepare_reconcile(self, conn: Connection) -> None:
        """JIT off for this transaction only: compiling the hashing query took a third of its time at 1M rows."""
        conn.exec_driver_sql("SET LOCAL jit = off")

    def hash32(self, digest: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """('x' || first 8 hex digits)::bit(32)::bigint: 0 .. 2^32 - 1 (bit(32) to bigint does not sign-extend)."""
        bits = sa.cast(sa.literal("x", sa.String()) + sa.func.substr(digest, 1, 8), BIT(32))
        return sa.cast(bits, sa.BigInteger())

    def moment_bound(self, moment: datetime, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """timestamptz for timestamptz columns; the UTC wall clock for plain timestamps."""
        if _has_time_zone(column):
            return sa.literal(moment, sa.DateTime(timezone=True))
        return sa.literal(moment.replace(tzinfo=None), sa.DateTime())
