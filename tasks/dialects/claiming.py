"""Claiming: flag the rows about to be sent, still as read, and keep them locked until the other zone has them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.tasks.dialects.core import CLAIM_ROW
from zonesync.tasks.dialects.reading import Reads
from zonesync.tasks.dialects.writing import Writes


@dataclass(frozen=True)
class Claimed:
    """What a claim took: the positions (in the guard) of the rows claimed (None: every row), and how many of them
    this transaction flagged itself. The others a concurrent writer had flagged with the very values read (a run
    that took over a stalled one's work): they are sent again, harmlessly, but were counted by that writer."""

    rows: pl.Series | None
    flagged: int


class Claims(Reads, Writes):
    """Flags set (and set back) with the guard of the values read."""

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
        """Flag the rows of `guard` whose guard columns still hold the values read, and keep them locked until
        the transaction ends. `within`: conditions every row read meets (its partition's), which the claim of a
        large batch names where an index serves them: a partition's batch spans a key range that holds the
        other partitions' rows too (32 partitions: 32 times as many; at 20,000 rows the range was the whole table).

        The caller writes the claimed rows to the other zone before committing: whoever wants to change them
        meanwhile waits, so the other zone never receives a value the source no longer holds.
        """
        if guard.height <= self.small_batch:
            return self._claim_bound(conn, source, flag_column, guard, keys, dtypes)
        temp = self.load_temp(conn, "zonesync_flag", source, guard.with_row_index(CLAIM_ROW))
        where = self._guard_conditions(source, temp, guard.columns, keys, dtypes)
        where.append(self.key_range(source, guard, keys))
        if self.indexes_partitions:
            where.extend(within)
        claimed: pl.Series | None = None
        flagged = int(conn.execute(self._flag_where(source, flag_column, where)).rowcount)
        if flagged != guard.height:
            query = self._claimed_where(source, flag_column, where).with_only_columns(temp.c[CLAIM_ROW])
            claimed = pl.Series([row for (row,) in conn.execute(query)], dtype=pl.UInt32).sort()
        temp.drop(conn)
        return Claimed(claimed, flagged)

    def _claim_bound(
        self,
        conn: Connection,
        source: sa.Table,
        flag_column: str,
        guard: pl.DataFrame,
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
    ) -> Claimed:
        """`claim` for a few rows: a bound UPDATE per row; only if some were not flagged, a locking SELECT per row."""
        named = {name: f"read_{name}" for name in guard.columns}  # a column's own name is reserved in an UPDATE
        bound = guard.clone()  # renamed without copying (a rename is a query)
        bound.columns = [named[name] for name in guard.columns]
        shape = ("claim", source, flag_column, tuple(keys), *((name, dtypes[name]) for name in guard.columns))
        params: dict[str, sa.BindParameter[Any]] = {name: sa.bindparam(value) for name, value in named.items()}

        def where() -> list[sa.ColumnElement[bool]]:
            return self._guard_conditions(source, params, list(named), keys, dtypes)

        update = self._statement(shape, lambda: self._flag_where(source, flag_column, where()))
        flagged = self.execute_bound(conn, update, bound)
        if flagged == guard.height:
            return Claimed(None, flagged)
        select = self._statement(("claimed", *shape), lambda: self._claimed_where(source, flag_column, where()))
        rows = self.bind_form(bound).iter_rows(named=True)
        claimed = pl.Series([i for i, row in enumerate(rows) if conn.execute(select, row).first()], dtype=pl.UInt32)
        return Claimed(claimed, flagged)

    def _flag_where(self, source: sa.Table, flag_column: str, where: list[sa.ColumnElement[bool]]) -> sa.Update:
        return sa.update(source).where(*where, self.not_synced(source.c[flag_column])).values({flag_column: sa.true()})

    def _claimed_where(self, source: sa.Table, flag_column: str, where: list[sa.ColumnElement[bool]]) -> sa.Select:
        """The rows still as read and flagged (by this transaction, or by another writer with the same values),
        locked: either way the other zone may be given these values."""
        flagged = source.c[flag_column].is_(sa.true())
        return sa.select(sa.literal(1)).where(*where, flagged).with_for_update()

    def unclaim(self, conn: Connection, source: sa.Table, flag_column: str, keys: pl.DataFrame) -> None:
        """Set the flag of claimed rows back to false (the other zone refused them)."""
        if keys.is_empty():
            return
        named = {name: f"key_{name}" for name in keys.columns}
        statement = self._statement(
            ("unclaim", source, flag_column, *keys.columns),
            lambda: (
                sa.update(source)
                .where(*(source.c[name] == sa.bindparam(bound) for name, bound in named.items()))
                .values({flag_column: sa.false()})
            ),
        )
        bound = keys.clone()
        bound.columns = list(named.values())
        self.execute_bound(conn, statement, bound)

    def _guard_conditions(
        self,
        source: sa.Table,
        values: sa.Table | dict[str, sa.BindParameter[Any]],
        columns: Sequence[str],
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
    ) -> list[sa.ColumnElement[bool]]:
        """Key equality plus exact null-safe equality of each compared column, as it was read."""
        conditions = []
        expression: sa.ColumnElement[Any]
        value: sa.ColumnElement[Any]
        for column in columns:
            if isinstance(values, sa.Table):  # loaded into columns of the source's own types
                value, expression = values.c[column], source.c[column]
            else:  # bound raw values: compare with the column as it was read
                value, expression = values[column], self.read_expression(source.c[column], dtypes[column])
            if column in keys:
                conditions.append(source.c[column] == value)
            else:
                conditions.append(self.same_value(expression, value))
        return conditions
