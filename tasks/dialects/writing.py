"""Writing: upserts (bound statements for a few rows, a bulk-loaded temporary table for more)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.tasks.dialects.core import CLAIM_ROW, DialectCore


class Writes(DialectCore):
    """Writes go through a temporary table: bulk-load the batch (the only per-database piece), then one
    set-based statement upserts the target. Statements are SQLAlchemy Core; only the bulk-load command (COPY,
    LOAD DATA) is text, with identifiers quoted by SQLAlchemy's preparer."""

    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Values in the form the bulk-load path of this database reads exactly."""
        return frame

    @abstractmethod
    def bulk_load(self, conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
        """Load an encoded frame into a (temporary) table as fast as this database allows."""

    def temp_table(self, name: str, like: sa.Table, columns: Sequence[str]) -> sa.Table:
        """A temporary table with the given columns of `like` (an integer for CLAIM_ROW), without constraints; the
        same Table for the same shape, so that the statements built on it are compiled once (SQLAlchemy's cache
        knows a table by its identity: a new one for each batch compiled its claim anew, ~3 ms of 1,000 rows')."""

        def build() -> sa.Table:
            return sa.Table(
                name,
                sa.MetaData(),
                *(sa.Column(c, like.c[c].type if c != CLAIM_ROW else sa.BigInteger()) for c in columns),
                prefixes=["TEMPORARY"],
            )

        table: sa.Table = self._statement(("temporary table", name, like, tuple(columns)), build)
        return table

    def load_temp(self, conn: Connection, name: str, like: sa.Table, frame: pl.DataFrame) -> sa.Table:
        """Create a temporary table shaped like `like` and load `frame` into it."""
        temp = self.temp_table(name, like, frame.columns)
        temp.drop(conn, checkfirst=True)
        temp.create(conn)
        self.bulk_load(conn, temp, self.encode(frame))
        return temp

    def analyze_temp(self, conn: Connection, temp: sa.Table) -> None:
        """Give the planner the loaded temporary table's statistics, where it plans joins without them."""

    # The three statement primitives every dialect provides; the statements below are built from them.
    @abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """This database's INSERT construct (with its conflict clause methods)."""

    def new_values(self, statement: Any) -> Any:
        """The pseudo-table of proposed row values: `excluded` (PostgreSQL, SQLite)."""
        return statement.excluded

    def on_conflict_update(
        self,
        statement: Any,
        keys: Sequence[str],
        set_: dict[str, Any],
        where: sa.ColumnElement[bool] | None = None,
    ) -> sa.Insert:
        """ON CONFLICT (keys) DO UPDATE SET ... [WHERE ...] (PostgreSQL, SQLite)."""
        return statement.on_conflict_do_update(index_elements=list(keys), set_=set_, where=where)

    def upsert_from(self, target: sa.Table, temp: sa.Table, keys: Sequence[str]) -> sa.Insert:
        """INSERT ... SELECT ... FROM temp that updates existing keys, skipping rows that would not change."""
        columns = [column.name for column in temp.columns]
        statement = self.insert(target).from_select(columns, sa.select(*temp.columns))
        new = self.new_values(statement)
        updates = [name for name in columns if name not in keys] or list(keys[:1])
        changed = sa.or_(*(sa.not_(self.same_value(target.c[name], new[name])) for name in updates))
        upsert = self.on_conflict_update(statement, keys, {name: new[name] for name in updates}, changed)
        return upsert.execution_options(preserve_rowcount=True)  # SQLAlchemy reports no INSERT rowcount otherwise

    def execute_bound(self, conn: Connection, statement: sa.Executable, frame: pl.DataFrame) -> int:
        """Run a statement with bound parameters once per row of `frame`; the rows it affected."""
        rows = list(frame.iter_rows(named=True))
        return int(conn.execute(statement, rows[0] if len(rows) == 1 else rows).rowcount)  # one row: no executemany

    def upsert(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> int:
        """Insert or update the rows of `frame` (target column names) into `target`; how many rows were inserted
        or changed (a row already equal, byte for byte, is left alone and not counted).

        A few rows (a push, a small backlog) go as one bound statement; more go through a temporary table,
        bulk-loaded: a temporary table costs four round trips, a bound statement one per ~1000 rows.
        """
        if frame.height <= self.small_batch:
            shape = ("upsert", target, tuple(frame.columns), tuple(keys))
            statement = self._statement(shape, lambda: self.upsert_statement(target, frame.columns, keys))
            return self.execute_bound(conn, statement, frame)
        temp = self.load_temp(conn, "zonesync_upsert", target, frame)
        changed = int(conn.execute(self.upsert_from(target, temp, keys)).rowcount)
        temp.drop(conn)
        return changed

    def upsert_statement(self, target: sa.Table, columns: Sequence[str], keys: Sequence[str]) -> sa.Insert:
        """INSERT ... VALUES (bound) that updates existing keys, skipping rows that would not change."""
        statement = self.insert(target).values({name: sa.bindparam(name) for name in columns})
        new = self.new_values(statement)
        updates = [name for name in columns if name not in keys] or list(keys[:1])
        changed = sa.or_(*(sa.not_(self.same_value(target.c[name], new[name])) for name in updates))
        upsert = self.on_conflict_update(statement, keys, {name: new[name] for name in updates}, changed)
        return upsert.execution_options(preserve_rowcount=True)  # SQLAlchemy reports no INSERT rowcount otherwise

    def bind_form(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Values in the form this driver binds exactly (as `execute_bound` sends them)."""
        return frame

    @staticmethod
    def same_value(column: sa.ColumnElement[Any], value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Null-safe equality, byte for byte: a change a collation calls equal (case, trailing blanks) is a change."""
        return column.is_not_distinct_from(value)

    def insert_or_update(
        self,
        table: sa.Table,
        keys: Sequence[str],
        replace: Sequence[str],
        extra: dict[str, Any] | None = None,
    ) -> sa.Insert:
        """INSERT ... VALUES (bound) that on key conflict takes the new `replace` columns and `extra`."""
        statement = self.insert(table)
        new = self.new_values(statement)
        return self.on_conflict_update(statement, keys, {name: new[name] for name in replace} | (extra or {}))
