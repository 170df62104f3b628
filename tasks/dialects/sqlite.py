"""SQLite: executemany of plain tuples in one transaction (no COPY, and no temporary table needed).

SQLite has no exact decimal or tz-aware timestamp type, so those columns are read as text and
parsed exactly; written as canonical text.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar, cast

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
    small_batch: ClassVar[int] = sys.maxsize  # no COPY here: bound statements in one transaction are the fast path

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

    def execute_bound(self, conn: Connection, statement: sa.Executable, frame: pl.DataFrame) -> int:
        """Compiled once, run through the stdlib cursor with plain tuples (3x SQLAlchemy's own executemany)."""
        compiled: Any = cast(Any, statement).compile(dialect=conn.dialect)
        rows = self.encode(frame).select(list(compiled.positiontup or [])).iter_rows()
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
