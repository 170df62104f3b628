"""The orphan sweep: target rows whose key the source table no longer holds, with no delete on its way — rows
deleted behind zonesync's back (a delete trigger dropped for a while, TRUNCATE, a restore of an older copy). It
reports them and never deletes anything: what an orphan means (a delete to carry by hand, a source to restore) is
an operator's call.

Bounded: the target's keys are read in key order, a batch at a time, and each batch is looked up in the source by
key (an index probe per chunk, whatever the two databases' collations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.deletes import tombstones
from zonesync.tasks.reconcile.findings import Key
from zonesync.tasks.reconcile.queries import key_in
from zonesync.tasks.schema.catalog import source_table, target_table
from zonesync.tasks.zones.engines import dialect_for, in_transaction, installing_for
from zonesync.tasks.zones.failures import translate

_PROBE = 5_000  # keys looked up in the source per statement


@dataclass(frozen=True)
class Orphans:
    """What the sweep of one mapping found: target rows read, orphans (counted; the first `listed` keys), and the
    target rows whose source row is gone with its delete pending (on their way: not orphans)."""

    mapping: str
    target_rows: int
    count: int
    keys: tuple[Key, ...]
    pending_deletes: int

    @property
    def ok(self) -> bool:
        """No orphan."""
        return self.count == 0

    def line(self) -> str:
        """One line for people: the counts and the first keys."""
        shown = ", ".join(map(str, self.keys)) + (" …" if self.count > len(self.keys) else "")
        orphans = f"{self.count:,} orphan(s), only in the target: {shown}" if self.count else "no orphan"
        return (f"{self.mapping}: {self.target_rows:,} target rows swept, {orphans}; {self.pending_deletes:,} whose "
                "delete is pending; nothing deleted")  # fmt: skip


def sweep_orphans(mapping: SyncMapping, source: Engine, target: Engine, *, batch_size: int = 50_000,
                  list_limit: int = 50) -> Orphans:  # fmt: skip
    """Sweep one mapping's target table for rows whose source row is gone (see the module docstring)."""
    try:
        return _sweep(mapping, source, target, batch_size, list_limit)
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, what="sweeping for orphans", mapping=mapping.name) from exc


def _sweep(mapping: SyncMapping, source: Engine, target: Engine, batch_size: int, list_limit: int) -> Orphans:
    source_keys = [source_table(mapping, source).c[column.source] for column in mapping.key_columns]
    table, dialect = target_table(mapping, target), dialect_for(target)
    dtypes = {column.name: column.dtype for column in mapping.key_columns}
    columns = [table.c[name] for name in mapping.keys]
    pending = _pending_delete_keys(mapping, source)
    swept, orphans, listed, waiting = 0, 0, list[Key](), 0
    after: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*(dialect.read_expression(c, dtypes[c.name]).label(c.name) for c in columns))
        if after is not None:
            query = query.where(dialect.keyset_after(columns, after))
        frame = dialect.read_frame(query.order_by(*columns).limit(batch_size), dtypes)
        if frame.is_empty():
            break
        keys = [_normal(row, mapping) for row in frame.select(mapping.keys).rows()]
        swept, after = swept + len(keys), frame.select(mapping.keys).row(-1)
        present = _present(source, source_keys, keys, mapping)
        gone = [key for key in keys if key not in present]
        waiting += sum(key in pending for key in gone)
        found = [key for key in gone if key not in pending]
        orphans += len(found)
        listed += found[: max(0, list_limit - len(listed))]
    return Orphans(mapping.name, swept, orphans, tuple(listed), waiting)


def _present(source: Engine, columns: Sequence[sa.Column[Any]], keys: list[Key], mapping: SyncMapping) -> set[Key]:
    """Which of these keys the source table holds."""
    present: set[Key] = set()
    with source.connect() as conn:
        for start in range(0, len(keys), _PROBE):
            chunk = keys[start : start + _PROBE]
            found = conn.execute(sa.select(*columns).where(key_in(columns, chunk)))
            present.update(_normal(tuple(row), mapping) for row in found)
    return present


def _pending_delete_keys(mapping: SyncMapping, source: Engine) -> set[Key]:
    """The keys of the mapping's pending tombstones: rows on their way out of the target."""
    if not tombstones.captures_deletes(source):
        return set()
    with source.connect() as conn:
        rows = conn.execute(tombstones.pending_query(mapping, None, None)).all()
    decoded = tombstones.decode(mapping, rows)
    return {_normal(key, mapping) for key in decoded.select(mapping.keys).rows()}


def _normal(key: Sequence[Any], mapping: SyncMapping) -> Key:
    """A key as comparable Python values, whichever database and driver it came from."""
    values: list[Any] = []
    for value, column in zip(key, mapping.key_columns, strict=True):
        if column.dtype.is_integer():
            values.append(int(value))
        elif column.dtype == pl.Date and not isinstance(value, date):
            values.append(date.fromisoformat(str(value)))
        else:
            values.append(value)
    return tuple(values)


def record_deletes(mapping: SyncMapping, source: Engine, keys: Sequence[Key]) -> int:
    """Tombstones for target rows whose source row is gone (what the reconciliation lists as only in the target),
    written the way the delete capture writes them, so that the next sync carries them by the mapping's policy;
    a key the source holds again is skipped. How many were written (none where deletes are not captured)."""
    from zonesync.tasks.setup.triggers import delete_capture

    if mapping.on_delete == "ignore" or not tombstones.captures_deletes(source) or not keys:
        return 0
    table = source_table(mapping, source)
    spec, installing = delete_capture(mapping, table), installing_for(source)
    columns = ["mapping", "record_key", "version", "deleted_at", "is_sync"]
    key_json = installing.key_json("k", spec)

    def write(conn: Connection) -> int:
        written = 0
        for key in keys:
            tombstone = _tombstone_of(mapping, table, key_json, installing.utc_now, key)
            insert = sa.insert(tombstones.sync_tombstone).from_select(columns, tombstone)
            written += conn.execute(insert.execution_options(preserve_rowcount=True)).rowcount
        return written

    try:
        return in_transaction(source, write)
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, what="recording deletes of rows only in the target", mapping=mapping.name) from exc


def _tombstone_of(mapping: SyncMapping, table: sa.Table, key_json: str, now: str, key: Key) -> sa.Select[Any]:
    """The tombstone row of one key, as the capture trigger would record it (the database's own JSON of the key,
    which a re-insert's trigger compares), only while the source has no row of that key."""
    values = zip(key, mapping.key_columns, strict=True)
    row = sa.select(*(sa.cast(sa.literal(v), table.c[c.source].type).label(c.source) for v, c in values)).subquery("k")
    alive = sa.exists().where(*(table.c[c.source] == row.c[c.source] for c in mapping.key_columns))
    record_key: sa.ColumnElement[str] = sa.literal_column(key_json)
    deleted_at: sa.ColumnElement[Any] = sa.literal_column(now)
    return (
        sa.select(sa.literal(mapping.name), record_key, sa.null(), deleted_at, sa.false())
        .select_from(row)
        .where(~alive)
    )
