"""SQLite: executemany of plain tuples in one transaction (no COPY, and no temporary table needed).

SQLite has no exact decimal or tz-aware timestamp type, so those columns are read as text and
parsed exactly; written as canonical text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from tasks.dialects.base import UTC_TEXT_FORMAT, Dialect

_TEXT_READ_TYPES = (pl.Decimal, pl.Datetime, pl.Date)


def _stored_type(dtype: pl.DataType) -> pl.DataType:
    """The polars type of what SQLite hands back for a column read with `read_expression`."""
    if isinstance(dtype, _TEXT_READ_TYPES):
        return pl.String()
    if dtype == pl.Boolean:
        return pl.Int64()
    return dtype


class SQLiteDialect(Dialect):
    """SQLite 3.35+ through the standard library driver."""

    name: ClassVar[str] = "sqlite"

    def read_expression(self, column: sa.ColumnElement[Any], dtype: pl.DataType) -> sa.ColumnElement[Any]:
        """Decimals, dates and timestamps as their stored text, so nothing passes through a float."""
        if isinstance(dtype, _TEXT_READ_TYPES):
            return sa.cast(column, sa.Text)
        return column

    def read_frame(self, query: sa.Select[Any], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Read through the stdlib driver with bound parameters.

        Not connectorx: its SQLite reader does not see pages still in the write-ahead log, so it returns
        rows as they were before recent commits (measured: a flag committed by another connection stayed
        invisible until a checkpoint).
        """
        compiled = query.compile(dialect=self.engine.dialect)
        parameters = [compiled.params[name] for name in compiled.positiontup or []]
        with self.engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            rows = raw.execute(str(compiled), parameters).fetchall()
        return self.frame_from_rows(rows, schema)

    def frame_from_rows(self, rows: Sequence[Sequence[Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """SQLite's values carry no type: the columns are typed as `read_expression` returns them."""
        stored = {name: _stored_type(dtype) for name, dtype in schema.items()}
        return pl.DataFrame([tuple(row) for row in rows], schema=stored, orient="row")

    def not_synced(self, flag: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Spelled so connectorx's SQL parser accepts it (it cannot parse `IS NOT 1`)."""
        return sa.or_(flag.is_(None), flag == sa.false())

    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Exact text for decimals and timestamps, 0/1 for booleans: what stdlib sqlite3 binds safely."""
        converted = []
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Datetime):
                suffix = "%:z" if dtype.time_zone else ""
                converted.append(pl.col(name).dt.strftime(UTC_TEXT_FORMAT + suffix))
            elif isinstance(dtype, pl.Decimal | pl.Date):
                converted.append(pl.col(name).cast(pl.String))
            elif dtype == pl.Boolean:
                converted.append(pl.col(name).cast(pl.Int8))
        return frame.with_columns(converted)

    def _executemany(self, conn: Connection, statement: sa.ClauseElement, frame: pl.DataFrame) -> int:
        """Compile once with positional parameters and run through the stdlib cursor (3x SQLAlchemy's speed)."""
        compiled: Any = statement.compile(dialect=conn.dialect)
        order = list(compiled.positiontup or [])
        rows = self.encode(frame).select(order).iter_rows()
        raw: Any = conn.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.executemany(str(compiled), rows)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def insert(self, table: sa.Table) -> Any:
        """SQLite's INSERT construct."""
        return sqlite_insert(table)

    def upsert(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> None:
        """INSERT ... VALUES (?) ON CONFLICT DO UPDATE, executemany in the caller's transaction."""
        statement = self.insert(target).values({name: sa.bindparam(name) for name in frame.columns})
        new = self.new_values(statement)
        updates = [name for name in frame.columns if name not in keys] or list(keys[:1])
        changed = sa.or_(*(target.c[name].is_distinct_from(new[name]) for name in updates))
        self._executemany(conn, self.on_conflict_update(statement, keys, {n: new[n] for n in updates}, changed), frame)

    def flag(
        self,
        conn: Connection,
        source: sa.Table,
        flag_column: str,
        guard: pl.DataFrame,
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
    ) -> int:
        """UPDATE ... WHERE key = ? AND column IS ? for each row read (the guard values are raw reads)."""
        params: dict[str, sa.BindParameter[Any]] = {name: sa.bindparam(name) for name in guard.columns}
        statement = (
            sa.update(source)
            .where(*self._guard_conditions(source, params, guard.columns, keys, dtypes))
            .where(self.not_synced(source.c[flag_column]))
            .values({flag_column: sa.true()})
        )
        return self._executemany(conn, statement, guard)
