"""The writers' contract, enforced in the database (`zonesync init --triggers`).

Applications that change a row of a mapped source table must, in the same statement, set its flag back to
false and move its version column on; zonesync relies on both (a change that keeps the flag true is never sent,
one that keeps the version looks unchanged in flight). For applications that cannot be trusted to, a trigger
on each source table does it for them: an UPDATE that changes a mapped column of a row whose flag stays true
sets the flag false, and one that leaves the version column as it was moves it on. zonesync's own writes pass
untouched: claiming changes only the flag, and an update with rollback clears the flag before it changes values.

The same command installs each mapping's delete capture (docs/deletes.md): a row deleted from the source table
leaves a tombstone in that database's `sync_tombstone`, and a row inserted again with its key supersedes it.
"""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.tables import create_tombstones, sync_tombstone
from zonesync.tasks.dialects.installing import DeleteCapture, VersionKind, WritersTrigger
from zonesync.tasks.schema.catalog import source_table
from zonesync.tasks.zones.engines import in_transaction, installing_for
from zonesync.tasks.zones.failures import translate


def writers_trigger(mapping: SyncMapping, source: sa.Table) -> WritersTrigger:
    """The trigger a mapping's source table needs: the mapped columns it watches, its flag and version."""
    keys, version = mapping.source_keys, mapping.version_column
    watched = tuple(c.source for c in mapping.columns if c.source not in keys and c.source != version)
    kind = _version_kind(mapping, source) if version else None
    return WritersTrigger(source, watched, mapping.flag_column, tuple(keys), version if kind else None, kind)


def install_writers_trigger(mapping: SyncMapping, engine: Engine) -> str:
    """(Re)install the trigger on the mapping's source table; one line saying what it enforces."""
    spec = writers_trigger(mapping, source_table(mapping, engine))
    try:
        statements = installing_for(engine).writers_trigger(spec)
        in_transaction(engine, lambda conn: [conn.exec_driver_sql(statement) for statement in statements])
    except Exception as exc:
        raise translate(exc, what=f"installing trigger {spec.name}", mapping=mapping.name) from exc
    bump = f", and moves {spec.version} on" if spec.version else ""
    return f"{spec.name} on {mapping.source_table}: an update that changes a mapped column resets {spec.flag}{bump}"


def delete_capture(mapping: SyncMapping, source: sa.Table) -> DeleteCapture:
    """The delete capture a mapping's source table needs: its keys, and the version a tombstone keeps."""
    version = mapping.version_column
    kind = _version_kind(mapping, source) if version else None
    return DeleteCapture(mapping.name, source, sync_tombstone, mapping.source_keys, version if kind else None, kind)


def install_delete_capture(mapping: SyncMapping, engine: Engine) -> str:
    """(Re)install the mapping's delete capture (and the tombstone table where missing); one line saying so."""
    spec = delete_capture(mapping, source_table(mapping, engine))
    try:
        create_tombstones(engine)
        statements = installing_for(engine).delete_capture(spec)
        in_transaction(engine, lambda conn: [conn.exec_driver_sql(statement) for statement in statements])
    except Exception as exc:
        raise translate(exc, what=f"installing trigger {spec.names[0]}", mapping=mapping.name) from exc
    return (f"{spec.names[0]} on {mapping.source_table}: a deleted row leaves a tombstone in sync_tombstone "
            f"(on_delete={mapping.on_delete})")  # fmt: skip


def writers_contract_enforced(mapping: SyncMapping, engine: Engine) -> bool:
    """Whether the mapping's source table has zonesync's writers'-contract trigger."""
    table = source_table(mapping, engine)
    try:
        with engine.connect() as conn:
            return installing_for(engine).has_trigger(conn, table, writers_trigger(mapping, table).name)
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, what=f"reading the triggers of {mapping.source_table}", mapping=mapping.name) from exc


def _version_kind(mapping: SyncMapping, source: sa.Table) -> VersionKind | None:
    """How the version column moves on: + 1, or now (in the column's own form); None if it is neither."""
    assert mapping.version_column is not None
    column_type = source.c[mapping.version_column].type
    if isinstance(column_type, sa.Integer):
        return "integer"
    if isinstance(column_type, sa.DateTime):
        return "timestamptz" if column_type.timezone else "timestamp"
    declared = next((c.dtype for c in mapping.columns if c.source == mapping.version_column), None)
    if isinstance(column_type, sa.String) and isinstance(declared, pl.Datetime):
        return "text_timestamp"  # SQLite keeps exact timestamps as ISO text
    return None
