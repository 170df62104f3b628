"""Reconciliation: one canonical text per value and one hash, computed alike on every database.

Used only by the reconciliation's queries, so it is its own object per database (no engine: expressions only,
and the one hook that readies a connection for them).
"""

from __future__ import annotations

import functools
import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, ClassVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

FIELD_SEPARATOR = "\x1f"
FLOAT_SCALE = 6  # floats are compared rounded to 6 decimals (their text differs between databases)


class Reconciling(ABC):
    """The expressions the reconciliation queries are built from."""

    text_type: ClassVar[sa.types.TypeEngine[Any]] = sa.Text()
    max_decimal_precision: ClassVar[int] = 65

    def prepare_reconcile(self, conn: Connection) -> None:  # noqa: B027 (an optional hook)
        """Ready a connection for the reconciliation queries (SQLite registers its functions)."""

    def as_text(self, expression: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """An expression as this database's text type."""
        return sa.cast(expression, self.text_type)

    def decimal_text(self, column: sa.ColumnElement[Any], scale: int) -> sa.ColumnElement[Any]:
        """Exactly `scale` decimals; the widest precision, so an oversized value differs instead of failing."""
        return sa.cast(column, sa.Numeric(self.max_decimal_precision, scale))

    @abstractmethod
    def timestamp_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """'YYYY-MM-DD HH:MM:SS.ffffff' in UTC."""

    @abstractmethod
    def date_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """'YYYY-MM-DD'."""

    def concat(self, parts: Sequence[sa.ColumnElement[str]]) -> sa.ColumnElement[str]:
        """Text concatenation (NULL if any part is NULL)."""
        return functools.reduce(operator.add, parts)

    def md5(self, text: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """The MD5 digest of UTF-8 text as 32 lowercase hex digits."""
        return sa.func.md5(text, type_=sa.String())

    @abstractmethod
    def hash32(self, digest: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """The first 8 hex digits of a digest as a non-negative integer."""

    def canonical_text(self, column: sa.ColumnElement[Any], dtype: pl.DataType) -> sa.ColumnElement[str]:
        """A value as the text every database renders alike; NULL stays NULL."""
        if dtype == pl.Boolean:
            text: sa.ColumnElement[Any] = sa.case((column.is_(None), sa.null()), (column == sa.true(), "1"), else_="0")
        elif isinstance(dtype, pl.Decimal):
            text = self.decimal_text(column, dtype.scale or 0)
        elif dtype.is_float():
            text = self.decimal_text(column, FLOAT_SCALE)
        elif isinstance(dtype, pl.Datetime):
            text = self.timestamp_text(column)
        elif dtype == pl.Date:
            text = self.date_text(column)
        else:
            text = column
        return self.as_text(text)

    def row_text(self, texts: Sequence[sa.ColumnElement[str]]) -> sa.ColumnElement[str]:
        """Canonical texts joined into one: fields '1' + text when present, '0' when NULL, separated by 0x1F."""
        present, absent = sa.literal("1", sa.String()), sa.literal("0", sa.String())
        fields = [sa.func.coalesce(self.concat([present, text]), absent, type_=sa.String()) for text in texts]
        separator = sa.literal(FIELD_SEPARATOR, sa.String())
        return self.concat([part for field in fields for part in (separator, field)][1:])

    def exact_sum(self, column: sa.ColumnElement[Any], dtype: pl.DataType) -> sa.ColumnElement[Any]:
        """SUM without rounding (numeric / DECIMAL arithmetic on servers)."""
        return sa.func.sum(column)

    def moment_bound(self, moment: datetime, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A UTC instant in the form a timestamp column stores it, to compare with."""
        return sa.literal(moment, sa.DateTime(timezone=True))

    def date_bound(self, day: date) -> sa.ColumnElement[Any]:
        """A date in the form a date column stores it."""
        return sa.literal(day, sa.Date())
