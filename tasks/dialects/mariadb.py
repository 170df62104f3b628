"""MariaDB / MySQL: rows joined as bound values (a few) or LOAD DATA LOCAL INFILE into a temporary table (more)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import CHAR
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Connection

from tasks.dialects.base import UTC_TEXT_FORMAT, Dialect
from tasks.errors import RefusedValue


class MariaDBDialect(Dialect):
    """MariaDB 10.5+ and MySQL 8 through PyMySQL (registered for both names)."""

    name: ClassVar[str] = "mariadb"
    text_type: ClassVar[sa.types.TypeEngine[Any]] = sa.CHAR()  # MariaDB casts to CHAR, not TEXT
    supports_partial_index: ClassVar[bool] = False

    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """UTC wall-clock text for timestamps (connections run in UTC); 0/1 for booleans."""
        converted = []
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Datetime):
                column = pl.col(name)
                if dtype.time_zone:
                    column = column.dt.convert_time_zone("UTC")
                converted.append(column.dt.strftime(UTC_TEXT_FORMAT))
            elif dtype == pl.Boolean:
                converted.append(pl.col(name).cast(pl.Int8))
        return frame.with_columns(converted)

    def keyset_after(self, keys: Sequence[sa.ColumnElement[Any]], values: Sequence[Any]) -> sa.ColumnElement[bool]:
        """(a > x) OR (a = x AND b > y) ...: MariaDB does not use an index for row-value comparisons."""
        branches = []
        for position in range(len(keys)):
            equal = [keys[i] == values[i] for i in range(position)]
            branches.append(sa.and_(*equal, keys[position] > values[position]))
        return sa.or_(*branches)

    def key_range(self, table: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> sa.ColumnElement[bool]:
        """Single keys only: MariaDB cannot use an index for row-value comparisons anyway."""
        return super().key_range(table, frame, keys) if len(keys) == 1 else sa.true()

    def bulk_load(self, conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
        """LOAD DATA LOCAL INFILE; any warning (truncation, bad value) fails the load instead of passing."""
        preparer = conn.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(name) for name in frame.columns)
        handle, path = tempfile.mkstemp(prefix="zonesync-", suffix=".csv")
        try:
            with os.fdopen(handle, "wb") as stream:
                frame.write_csv(stream, include_header=False, null_value="NULL", quote_style="non_numeric")
            command = (
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {preparer.format_table(table)} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                f"LINES TERMINATED BY '\\n' ({columns})"
            )
            raw: Any = conn.connection.dbapi_connection
            with raw.cursor() as cursor:
                cursor.execute(command, (path,))
                warnings = raw.show_warnings()
        finally:
            os.unlink(path)
        if warnings:
            raise RefusedValue(f"bulk load refused a value: {warnings[0][2]}")

    def load_temp(self, conn: Connection, name: str, like: sa.Table, frame: pl.DataFrame) -> sa.Table:
        """Temporary tables live as long as the session: drop any left over, create, load."""
        temp = self.temp_table(name, like, frame.columns)
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {conn.dialect.identifier_preparer.format_table(temp)}")
        temp.create(conn)
        self.bulk_load(conn, temp, self.encode(frame))
        return temp

    def supports_two_phase(self) -> bool:
        """XA transactions (InnoDB)."""
        return True

    def execute_bound(self, conn: Connection, statement: sa.Executable, frame: pl.DataFrame) -> int:
        """Bound rows in MariaDB's terms: UTC wall-clock timestamps, 0/1 booleans."""
        return super().execute_bound(conn, statement, self.encode(frame))

    def upsert(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> None:
        """UPDATE the keys that exist (a join), then INSERT the ones that do not (an anti-join).

        Not ON DUPLICATE KEY UPDATE: it fires on *any* unique index, so a row clashing with another row's
        unique column would silently overwrite that other row. These two statements raise instead, and the
        clashing row is isolated and quarantined. A few rows (a push) are joined as a derived table of bound
        values; more are bulk-loaded into a temporary table (creating one costs milliseconds).
        """
        if frame.height <= self.small_batch:
            for statement in update_then_insert(target, bound_rows(target, self.encode(frame)), keys):
                conn.execute(statement)
            return
        temp = self.load_temp(conn, "zonesync_upsert", target, frame)
        for statement in update_then_insert(target, temp, keys):
            conn.execute(statement)
        temp.drop(conn)

    def insert(self, table: sa.Table) -> Any:
        """MySQL's INSERT construct."""
        return mysql_insert(table)

    def new_values(self, statement: Any) -> Any:
        """VALUES(col) on MariaDB (it has no `AS new` row alias)."""
        return statement.inserted

    def on_conflict_update(
        self,
        statement: Any,
        keys: Sequence[str],
        set_: dict[str, Any],
        where: sa.ColumnElement[bool] | None = None,
    ) -> sa.Insert:
        """ON DUPLICATE KEY UPDATE (never REPLACE, which deletes and reinserts); unchanged rows cost nothing."""
        return statement.on_duplicate_key_update(set_)

    def recommended_index(self, table: sa.Table, keys: Sequence[str], flag_column: str) -> str:
        """MariaDB has no partial indexes: lead with the flag so unsynced rows are one range."""
        index = sa.Index(
            f"ix_{table.name}_{flag_column}_pending"[:63],
            table.c[flag_column],
            *(table.c[key] for key in keys),
        )
        return str(sa.schema.CreateIndex(index).compile(dialect=self.engine.dialect)).strip() + ";"

    def as_text(self, expression: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """utf8mb4 with a binary collation: the bytes PostgreSQL and Python hash, and no mix-of-collations error."""
        return sa.cast(expression, CHAR(charset="utf8mb4")).collate("utf8mb4_bin")

    def timestamp_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """DATE_FORMAT of the stored UTC wall clock (sessions run with time_zone '+00:00')."""
        return sa.func.date_format(column, "%Y-%m-%d %H:%i:%s.%f")

    def date_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """DATE_FORMAT(d, '%Y-%m-%d')."""
        return sa.func.date_format(column, "%Y-%m-%d")

    def concat(self, parts: Sequence[sa.ColumnElement[str]]) -> sa.ColumnElement[str]:
        """CONCAT(a, b, ...): one call (`||` is OR here)."""
        return sa.func.concat(*parts, type_=sa.String())

    def hash32(self, digest: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """CONV of the first 8 hex digits to an unsigned integer."""
        return sa.cast(sa.func.conv(sa.func.left(digest, 8), 16, 10), sa.BigInteger())

    def moment_bound(self, moment: datetime, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """DATETIME holds the UTC wall clock."""
        return sa.literal(moment.replace(tzinfo=None), sa.DateTime())


def bound_rows(target: sa.Table, frame: pl.DataFrame) -> sa.Subquery:
    """The rows as a derived table: a SELECT of bound values per row, UNION ALL."""
    rows = [
        sa.select(*(sa.literal(value, target.c[name].type).label(name) for name, value in row.items()))
        for row in frame.iter_rows(named=True)
    ]
    return (sa.union_all(*rows) if len(rows) > 1 else rows[0]).subquery("zonesync_rows")


def update_then_insert(target: sa.Table, rows: sa.Table | sa.Subquery, keys: Sequence[str]) -> list[sa.Executable]:
    """UPDATE the target rows whose key is among `rows`, then INSERT the `rows` whose key the target lacks."""
    same_key = [target.c[key] == rows.c[key] for key in keys]
    updates = {column.name: column for column in rows.columns if column.name not in keys}
    new_rows = sa.select(*rows.columns).where(~sa.exists().where(*same_key))
    insert = sa.insert(target).from_select([column.name for column in rows.columns], new_rows)
    return [sa.update(target).where(*same_key).values(updates), insert] if updates else [insert]
