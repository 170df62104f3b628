"""Sees a mapped table's catalog change between a run's start and each commit.

A run (or the HTTP API, for each request) remembers each table's catalog signature (one catalog query,
`Dialect.catalog_signature`) before it reflects the table, and checks it again in every transaction that wrote or
claimed rows of it, after the write and before the commit: DDL waits for the write's locks, so a change the write
could have met is seen there. A change rolls the batch back (its rows stay unflagged) and stops the mapping for
this run; the next run examines the change (`tasks/schema/contract.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.schemas.errors import SyncError, TerminalSyncError
from zonesync.schemas.settings import Zone
from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.zones.failures import translate


class SchemaChanged(TerminalSyncError):
    """A mapped table's catalog changed while a batch was being written: the batch was rolled back."""

    reason = "schema_changed"


@dataclass
class ShapeWatch:
    """Sees a mapped table's catalog change between a run's start and each write (see the module docstring)."""

    mapping: str
    signatures: dict[tuple[int, str], tuple[tuple[Any, ...], ...]] = field(default_factory=dict)

    def baseline(self, dialect: Dialect, table: sa.Table, zone: Zone) -> None:
        """Remember the table's catalog as the run found it."""
        try:
            with dialect.engine.connect() as conn:
                self.signatures[self._key(dialect, table)] = dialect.catalog_signature(conn, table)
        except sa.exc.SQLAlchemyError as exc:
            raise translate(exc, what=f"reading the catalog of table {table.name!r} in the {zone} zone",
                            mapping=self.mapping) from exc  # fmt: skip

    def verify(self, conn: Connection, dialect: Dialect, table: sa.Table, zone: Zone) -> None:
        """In a transaction that wrote (or claimed rows of) `table`, before it commits: raise SchemaChanged (the
        caller rolls back) if the catalog is no longer what the run found."""
        expected = self.signatures.get(self._key(dialect, table))
        if expected is not None and dialect.catalog_signature(conn, table) != expected:
            raise self._changed(table, zone)

    def explain(self, error: SyncError, dialect: Dialect, table: sa.Table, zone: Zone) -> SyncError:
        """A write to `table` that failed as a whole (no such column, ...): SchemaChanged if the table changed since
        the run found it (the change is the cause worth telling), else the error itself."""
        if isinstance(error, SchemaChanged):
            return error
        try:
            self.check_now(dialect, table, zone)
        except SchemaChanged as changed:
            return changed
        except sa.exc.SQLAlchemyError:
            return error  # the zone is not answering: the error says so
        return error

    def check_now(self, dialect: Dialect, table: sa.Table, zone: Zone) -> None:
        """On a connection of its own: raise SchemaChanged if the table changed since the run found it (rows the
        target refused one by one may have been refused by the change, which must not become their quarantine)."""
        expected = self.signatures.get(self._key(dialect, table))
        if expected is None:
            return
        with dialect.engine.connect() as conn:
            if dialect.catalog_signature(conn, table) != expected:
                raise self._changed(table, zone)

    def _changed(self, table: sa.Table, zone: Zone) -> SchemaChanged:
        return SchemaChanged(
            f"table {table.name!r} in the {zone} zone changed while a batch was written: the batch was rolled back "
            "and its rows stay unflagged; the next run examines the change (`zonesync schema diff`)",
            mapping=self.mapping,
        )

    def found(self, dialect: Dialect, table: sa.Table) -> tuple[Any, ...] | None:
        """The table as the run found it (its engine, name and catalog signature), or None (not found)."""
        key = self._key(dialect, table)
        signature = self.signatures.get(key)
        return (*key, signature) if signature else None

    @staticmethod
    def _key(dialect: Dialect, table: sa.Table) -> tuple[int, str]:
        return id(dialect.engine), f"{table.schema}.{table.name}"
