"""Read unsynced source rows in key order, one keyset batch at a time, through connectorx."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl
import sqlalchemy as sa

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.schema.catalog import has_unique_key, polars_hint


@dataclass
class UnsyncedReader:
    """Builds and runs the batch queries of one mapping's source table."""

    mapping: SyncMapping
    dialect: Dialect
    table: sa.Table
    only: tuple[sa.ColumnElement[bool], ...] = ()  # further conditions (one partition's rows)
    dtypes: dict[str, pl.DataType] = field(init=False)
    unique_key: bool = field(init=False)

    def __post_init__(self) -> None:
        self.unique_key = has_unique_key(self.table, self.mapping.source_keys)
        self.dtypes = {column.source: column.dtype for column in self.mapping.columns}
        for name in self.mapping.guard_columns:
            self.dtypes.setdefault(name, polars_hint(self.table.c[name]))

    @property
    def columns(self) -> list[str]:
        """Source columns read: the mapped ones plus the version column."""
        return list(self.dtypes)

    def pending_filter(self) -> list[sa.ColumnElement[bool]]:
        """Rows still to send: flag not true (NULL counts as not synced), eligible (and in `only`)."""
        conditions = [self.dialect.not_synced(self.table.c[self.mapping.flag_column]), *self.only]
        for column, value in (self.mapping.eligible or {}).items():
            conditions.append(self.table.c[column] == value)
        return conditions

    def select(self) -> sa.Select[Any]:
        """SELECT of the columns read, each the way the dialect reads it exactly (no filter)."""
        return sa.select(*(self.dialect.read_expression(self.table.c[n], t).label(n) for n, t in self.dtypes.items()))

    def batch_query(self, after: tuple[Any, ...] | None, limit: int) -> sa.Select[Any]:
        """The keyset query for the batch after `after` (source key values of the previous batch's last row)."""
        keys = [self.table.c[name] for name in self.mapping.source_keys]
        query = self.select().where(*self.pending_filter())
        if after is not None:
            query = query.where(self.dialect.keyset_after(keys, after))
        return query.order_by(*keys).limit(limit)

    def read_batch(self, after: tuple[Any, ...] | None, limit: int) -> pl.DataFrame:
        """One batch of unsynced rows, in key order, as read (no conversion yet).

        When the source key is not unique, a full batch also takes every other row of its last key, so that
        copies of a key never straddle two batches (where `key > last` would skip them): they meet in one
        batch and are quarantined as duplicate_key.
        """
        batch = self.dialect.read_frame(self.batch_query(after, limit), self.dtypes)
        if self.unique_key or batch.height < limit:
            return batch
        last = last_key(batch, self.mapping)
        keys = [self.table.c[name] for name in self.mapping.source_keys]
        rest = self.batch_query(None, limit).where(*(k == v for k, v in zip(keys, last, strict=True))).limit(None)
        same_last = pl.all_horizontal(pl.col(n) == v for n, v in zip(self.mapping.source_keys, last, strict=True))
        return pl.concat([batch.filter(~same_last), self.dialect.read_frame(rest, self.dtypes)], how="vertical_relaxed")

    def count_pending(self) -> int:
        """How many rows wait to be sent."""
        query = sa.select(sa.func.count()).select_from(self.table).where(*self.pending_filter())
        with self.dialect.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def any_pending(self) -> bool:
        """Whether any row waits to be sent: the first one found answers (a count visits them all)."""
        query = sa.select(sa.literal(1)).select_from(self.table).where(*self.pending_filter()).limit(1)
        with self.dialect.engine.connect() as conn:
            return conn.execute(query).first() is not None


def last_key(raw: pl.DataFrame, mapping: SyncMapping) -> tuple[Any, ...]:
    """The key of the last row of a batch: where the next batch starts."""
    return tuple(raw[name][-1] for name in mapping.source_keys)
