"""Exactness: values a column of this database would not keep as sent, refused before any write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import sqlalchemy as sa

from zonesync.tasks.dialects.core import DialectCore


class Exactness(DialectCore):
    """Nothing is refused by default: a server database keeps what its column types declare."""

    def refusal(self, column: sa.Column[Any], value: Any) -> str | None:
        """Why `column` cannot hold `value` (as bound for it) exactly, or None: checked before any write."""
        return None

    def inexact_rows(self, table: sa.Table, frame: pl.DataFrame, row: str) -> pl.DataFrame:
        """The rows of `frame` (by its `row` column) that `table` would store altered, with the detail."""
        return pl.DataFrame(schema={row: pl.UInt32, "detail": pl.String})

    def column_warnings(self, table: sa.Table, columns: Sequence[str]) -> list[str]:
        """What `zonesync init` says about columns of `table` that cannot keep every value exactly."""
        return []
