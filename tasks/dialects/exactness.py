"""Exactness: values a live column would not keep as sent, found before any write.

What a column keeps is read from the table as it is now (its reflected type), never from the mapping's model: a
DBA's `ALTER`, or a target created with a smaller scale, would otherwise have money and time rounded on
assignment, which PostgreSQL and MariaDB do without an error. Each database describes its columns
(`column_shape`); the rules they are checked by are the same for all of them (`column_shapes.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.tasks.dialects.column_shapes import (
    MICROSECOND_DIGITS,
    NO_BOUNDS,
    ColumnShape,
    inexact_rows_of,
    integer_range,
)
from zonesync.tasks.dialects.core import DialectCore

_MAX_SHAPES = 4096  # reflected columns whose shapes a dialect remembers


class Exactness(DialectCore):
    """What a live column keeps, told by its reflected type; each database refines `column_shape`."""

    default_fraction_digits: int | None = MICROSECOND_DIGITS  # of a timestamp declared without a precision

    def column_shape(self, column: sa.Column[Any]) -> ColumnShape:
        """What `column` keeps, from its reflected type (SQLAlchemy's generic types; databases refine it)."""
        sql_type = column.type
        spelled = _spelled(sql_type, self)
        if isinstance(sql_type, sa.Float):
            return ColumnShape(spelled, approximate=True)
        if isinstance(sql_type, sa.Numeric):
            return ColumnShape(spelled, precision=sql_type.precision, scale=sql_type.scale)
        if isinstance(sql_type, sa.DateTime):
            digits = getattr(sql_type, "precision", None)
            return ColumnShape(spelled, fraction_digits=self.default_fraction_digits if digits is None else digits)
        if isinstance(sql_type, sa.String):
            return ColumnShape(spelled, length=sql_type.length)
        if isinstance(sql_type, sa.Integer):
            return ColumnShape(spelled, integer_range=integer_range(sql_type))
        return ColumnShape(spelled)

    def shape_of(self, column: sa.Column[Any]) -> ColumnShape:
        """`column_shape`, remembered for this reflected column (a table is reflected again when it changes)."""
        shapes: dict[sa.Column[Any], ColumnShape] = self.__dict__.setdefault("_shapes", {})
        shape = shapes.get(column)
        if shape is None:
            if len(shapes) >= _MAX_SHAPES:
                shapes.clear()
            shape = shapes[column] = self.column_shape(column)
        return shape

    def inexact_rows(
        self, table: sa.Table, frame: pl.DataFrame, row: str, longest: Mapping[str, int] = NO_BOUNDS
    ) -> pl.DataFrame:
        """The rows of `frame` (by its `row` column) that `table` as it is would store altered, with the detail
        (`longest`: see `inexact_rows_of`)."""
        shapes = {name: self.shape_of(table.c[name]) for name in frame.columns if name in table.c}
        return inexact_rows_of(shapes, frame, row, longest)

    def refusal(self, column: sa.Column[Any], value: Any) -> str | None:
        """Why `column` cannot hold `value` (as bound for it) exactly, or None: checked before any write."""
        return None if value is None else self.shape_of(column).value_alteration(value)

    def catalog_signature(self, conn: Connection, table: sa.Table) -> tuple[tuple[Any, ...], ...]:
        """What the catalog says of `table` now, in a form only compared with itself: a change of any column's
        type, nullability, default or key changes it, and so does a dropped table (no rows). Run in the transaction
        that writes the table, after the write, it sees any DDL that the write could have met (DDL waits for the
        write's locks). Generic (SQLAlchemy's inspector); databases give one catalog query instead."""
        inspector = sa.inspect(conn)
        try:
            columns = inspector.get_columns(table.name, schema=table.schema)
            key = inspector.get_pk_constraint(table.name, schema=table.schema)
        except sa.exc.NoSuchTableError:
            return ()
        described = tuple((c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in columns)
        return (*described, tuple(key.get("constrained_columns") or ()))

    def column_warnings(self, table: sa.Table, columns: Mapping[str, tuple[pl.DataType, int | None]]) -> list[str]:
        """What `zonesync init` says about live columns narrower than the model (`columns`: name -> the model's type
        and, for a text, the most characters its checks let through)."""
        warnings = []
        for name, (dtype, longest) in columns.items():
            narrower = self.column_shape(table.c[name]).narrower_than(dtype, longest) if name in table.c else None
            if narrower:
                warnings.append(f"column {name!r} of {table.name!r}: {narrower}; values that do not fit are refused")
        return warnings


def _spelled(sql_type: sa.types.TypeEngine[Any], dialect: DialectCore) -> str:
    try:
        return str(sql_type.compile(dialect=dialect.engine.dialect)).lower()
    except sa.exc.SQLAlchemyError:
        return str(sql_type).lower()
