"""The two sides of an update with rollback: the mapping's reflected tables and dialects, and the statements and
reads both of its paths (rollback.py, twophase.py) and recovery (recovery.py) share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import TerminalSyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.settings import get_settings
from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.push.records import column_value
from zonesync.tasks.schema.contract import watched_source, watched_target
from zonesync.tasks.schema.watch import ShapeWatch
from zonesync.tasks.sync.batch import BatchCarrier, BatchOutcome, SourceSide, TargetSide
from zonesync.tasks.sync.extract import UnsyncedReader
from zonesync.tasks.zones.engines import dialect_for, get_engine


class UpdateConflict(TerminalSyncError):
    """The source row changed between reading it and updating it."""


@dataclass(frozen=True)
class Sides:
    """The two sides of a mapping as an update sees them: reflected tables, dialects, and its statements."""

    mapping: SyncMapping
    source: sa.Table
    target: sa.Table
    source_dialect: Dialect
    target_dialect: Dialect
    reader: UnsyncedReader
    watch: ShapeWatch

    @classmethod
    def of(cls, mapping: SyncMapping) -> Sides:
        """Both tables as they are now, held to the schema contract (a breaking change: SchemaBreak), watched from
        before they are reflected until each write commits (`verify_source`, `verify_target`)."""
        source_engine, target_engine = get_engine(mapping.source_zone), get_engine(mapping.target_zone)
        source_dialect, target_dialect = dialect_for(source_engine), dialect_for(target_engine)
        watch = ShapeWatch(mapping.name)
        source = watched_source(watch, mapping, source_dialect)
        target = watched_target(
            watch, mapping, get_engine("intranet"), source, source_dialect, target_dialect, scheduled=False
        )
        reader = UnsyncedReader(mapping, source_dialect, source)
        return cls(mapping, source, target, source_dialect, target_dialect, reader, watch)

    def verify_source(self, conn: Connection) -> None:
        """Before a source transaction that wrote the row commits: its table is still as reflected."""
        self.watch.verify(conn, self.source_dialect, self.source, self.mapping.source_zone)

    def verify_target(self, conn: Connection) -> None:
        """Before a target transaction that wrote the row commits: its table is still as reflected."""
        self.watch.verify(conn, self.target_dialect, self.target, self.mapping.target_zone)

    def dialect_of(self, engine: Engine) -> Dialect:
        return self.source_dialect if engine is self.source_dialect.engine else self.target_dialect

    def two_phase(self) -> bool:
        """Two-phase commit when the settings allow it and both databases offer it."""
        return get_settings().two_phase and all(
            d.supports_two_phase() for d in (self.source_dialect, self.target_dialect)
        )

    def update_statement(self, key: dict[str, Any], before: dict[str, Any], changes: dict[str, Any]) -> sa.Update:
        """SET the changes and the flag — only on the row still holding, byte for byte, what was read.

        Run after `clear_flag_statement`: a row changed while its flag was already false is how the writers'
        contract (and the triggers `zonesync init --triggers` installs) tells zonesync's own writes apart."""
        same = self.source_dialect.same_value
        unchanged = [same(self.source.c[n], sa.literal(v, self.source.c[n].type)) for n, v in before.items()]
        return (
            sa.update(self.source)
            .where(*self.where_key(key), *unchanged)
            .values({**changes, self.mapping.flag_column: sa.true()})
        )

    def clear_flag_statement(self, key: dict[str, Any]) -> sa.Update:
        """Mark the row not synced (its values are about to change in both zones)."""
        return sa.update(self.source).where(*self.where_key(key)).values({self.mapping.flag_column: sa.false()})

    def where_key(self, key: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
        return [self.source.c[name] == value for name, value in key.items()]

    def read_source(self, key: dict[str, Any], conn: Connection | None = None) -> pl.DataFrame:
        """The source row as the retry sync reads it (0 or 1 rows)."""
        query = self.reader.select().where(*self.where_key(key))
        if conn is None:
            with self.source_dialect.engine.connect() as own:
                return self.source_dialect.frame_from_rows(own.execute(query).all(), self.reader.dtypes)
        return self.source_dialect.frame_from_rows(conn.execute(query).all(), self.reader.dtypes)

    def stored(self, key: dict[str, Any], columns: list[str], *, raw: bool = False) -> dict[str, Any] | None:
        """The current values of some source columns (None: no such row), in comparable form, or as the driver
        returns them (`raw`: what a WHERE clause compares the row with)."""
        query = sa.select(*(self.source.c[name] for name in columns)).where(*self.where_key(key))
        with self.source_dialect.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        values = dict(row._mapping)
        return values if raw else self.comparable(values)

    def resend(self, key: dict[str, Any], intranet: Engine) -> BatchOutcome | None:
        """Send the source row to the target again, as every batch is sent (claimed, written, committed: see
        tasks/sync/batch.py); None when there is no such row."""
        row = self.read_source(key)
        if row.is_empty():
            return None
        source = SourceSide(self.source, self.source_dialect, self.reader.dtypes)
        target = TargetSide(self.target, self.target_dialect)
        return BatchCarrier(self.mapping, source, target, intranet, watch=self.watch).carry(row)

    def comparable(self, values: dict[str, Any]) -> dict[str, Any]:
        """Stored values in the one form that compares equal to a request's and to a JSON before-image's."""
        return {name: column_value(self.source, self.mapping, name, value) for name, value in values.items()}
