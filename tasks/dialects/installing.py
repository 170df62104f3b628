"""What `zonesync init` and `zonesync grants` install or advise on a database: the writers'-contract trigger,
privileges, indexes, storage.

Used only by triggers, grants and inspection, so it is its own object per database, built on the engine's
dialect (the pending-rows index must match the dialect's own spelling of "not synced")."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.tasks.dialects.reading import Reads

VersionKind = Literal["timestamptz", "timestamp", "integer", "text_timestamp"]


@dataclass(frozen=True)
class WritersTrigger:
    """What the writers'-contract trigger of one source table enforces: when an UPDATE changes a watched column
    of a row whose flag stays true, the flag goes back to false; when it leaves the version column as it was,
    the version moves on (`version_kind` says how: now, or + 1)."""

    table: sa.Table
    watched: tuple[str, ...]
    flag: str
    keys: tuple[str, ...]
    version: str | None = None
    version_kind: VersionKind | None = None

    @property
    def name(self) -> str:
        """The trigger's (and on PostgreSQL its function's) name."""
        return f"zonesync_writers_{self.table.name}"[:63]


@dataclass(frozen=True)
class DeleteCapture:
    """What the delete-capture triggers of one mapping record: a row deleted from `table` leaves a tombstone (the
    mapping, its key as JSON, its version as text, when) in `tombstones`; a row inserted with the key of a pending
    tombstone supersedes it (the later insert wins: the row is sent again, the delete is not)."""

    mapping: str
    table: sa.Table
    tombstones: sa.Table
    keys: tuple[str, ...]
    version: str | None = None
    version_kind: VersionKind | None = None

    @property
    def names(self) -> tuple[str, str]:
        """The delete trigger's and the insert trigger's names (and on PostgreSQL their functions')."""
        slug = self.mapping.replace("-", "_")
        return f"zonesync_deletes_{slug}"[:63], f"zonesync_reinserts_{slug}"[:63]


PRIVILEGE_ORDER = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass
class TableGrant:
    """What a role may do to one table: whole-table privileges, and SELECT or UPDATE of some columns only."""

    table: sa.Table
    privileges: set[str] = field(default_factory=set)
    select_columns: set[str] = field(default_factory=set)
    update_columns: set[str] = field(default_factory=set)
    upserted_columns: set[str] = field(default_factory=set)  # what an INSERT ... ON CONFLICT UPDATE inserts

    def allow(
        self, *privileges: str, select: Iterable[str] = (), update: Iterable[str] = (), upsert: Iterable[str] = ()
    ) -> None:
        self.privileges.update(privileges)
        self.select_columns.update(select)
        self.update_columns.update(update)
        self.upserted_columns.update(upsert)

    @property
    def ordered(self) -> list[str]:
        """The whole-table privileges in the usual order."""
        return [privilege for privilege in PRIVILEGE_ORDER if privilege in self.privileges]

    def by_column(self, upsert_updates_inserted: bool = False) -> list[tuple[str, list[str]]]:
        """The privileges granted column by column (where the whole table is not), with their columns; where the
        database checks UPDATE of every column an upsert inserts (`upsert_updates_inserted`), those too."""
        updated = self.update_columns | (self.upserted_columns if upsert_updates_inserted else set())
        limited = {"SELECT": self.select_columns, "UPDATE": updated}
        return [(p, sorted(columns)) for p, columns in limited.items() if columns and p not in self.privileges]


class Installing(ABC):
    """DDL and advice for one database; the trigger and the grants are each database's own."""

    def __init__(self, dialect: Reads) -> None:
        self.dialect = dialect
        self.engine = dialect.engine

    @abstractmethod
    def writers_trigger(self, spec: WritersTrigger) -> list[str]:
        """DDL that (re)installs the writers'-contract trigger of a source table (idempotent)."""

    def delete_capture(self, spec: DeleteCapture) -> list[str]:
        """DDL that (re)installs a mapping's delete capture (idempotent): AFTER DELETE records a tombstone, AFTER
        INSERT supersedes a pending tombstone of the same key."""
        preparer = self.engine.dialect.identifier_preparer
        quote, tombstones = preparer.quote, preparer.format_table(spec.tombstones)
        mapping = f"'{spec.mapping}'"  # a mapping name is lowercase letters, digits, '_' and '-' (checked)
        version = "NULL"
        if spec.version and spec.version_kind:
            version = self.version_text(f"OLD.{quote(spec.version)}", spec.version_kind)
        columns = ", ".join(map(quote, ("mapping", "record_key", "version", "deleted_at", "is_sync")))
        record = (f"INSERT INTO {tombstones} ({columns}) VALUES ({mapping}, {self.key_json('OLD', spec)}, "
                  f"{version}, {self.utc_now}, false)")  # fmt: skip
        pending = (~sa.column("is_sync", sa.Boolean())).compile(dialect=self.engine.dialect)  # as the index says it
        supersede = (f"UPDATE {tombstones} SET {quote('is_sync')} = true, {quote('outcome')} = 'superseded' "
                     f"WHERE {quote('mapping')} = {mapping} AND {quote('record_key')} = {self.key_json('NEW', spec)} "
                     f"AND {pending}")  # fmt: skip
        deletes, reinserts = spec.names
        return [*self.row_trigger(deletes, "DELETE", spec.table, record),
                *self.row_trigger(reinserts, "INSERT", spec.table, supersede)]  # fmt: skip

    # The pieces of the delete capture each database spells its own way.
    utc_now: ClassVar[str]  # now, as the tombstone's naive-UTC `deleted_at` stores it

    @abstractmethod
    def key_json(self, row: str, spec: DeleteCapture) -> str:
        """The key columns of OLD or NEW as a JSON object's text."""

    @abstractmethod
    def version_text(self, column: str, kind: VersionKind) -> str:
        """A version value as text: integers in decimal, timestamps as the UTC wall clock with microseconds."""

    @abstractmethod
    def row_trigger(self, name: str, event: str, table: sa.Table, statement: str) -> list[str]:
        """DDL that (re)installs an AFTER `event` FOR EACH ROW trigger running one statement."""

    @abstractmethod
    def has_trigger(self, conn: Connection, table: sa.Table, name: str) -> bool:
        """Whether `table` has a trigger of this name (the catalog's word: installed by whom does not matter)."""

    @abstractmethod
    def grant_statements(self, grants: Sequence[TableGrant], role: str) -> list[str]:
        """The statements that give `role` these privileges, and what bulk loads and generated ids need."""

    def server_warnings(self, conn: Connection) -> list[str]:
        """What `zonesync init` says about the server's own settings (none by default)."""
        return []

    def table_advice(self, table: sa.Table) -> list[str]:
        """Storage settings that make flagging cheaper on this database (none by default)."""
        return []

    def partition_index(
        self, table: sa.Table, partition: sa.ColumnElement[int], keys: Sequence[str], flag_column: str
    ) -> str | None:
        """DDL of the index that serves one partition's reads (`partition`: a row's partition number), where the
        database indexes expressions (none by default: each partition's read then filters the pending rows)."""
        return None

    def recommended_index(self, table: sa.Table, keys: Sequence[str], flag_column: str) -> str:
        """DDL of the index that makes reading the unsynced rows cheap."""
        flag = table.c[flag_column]
        index = sa.Index(
            f"ix_{table.name}_{flag_column}_pending"[:63],
            *(table.c[key] for key in keys),
            postgresql_where=self.dialect.not_synced(flag),
            sqlite_where=self.dialect.not_synced(flag),
        )
        return str(sa.schema.CreateIndex(index).compile(dialect=self.engine.dialect)).strip() + ";"
