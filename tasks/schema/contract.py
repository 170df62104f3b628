"""The schema contract: the accepted shape of each mapping's tables, kept in the intranet zone (`sync_schema`).

At a run's start the live shape is compared with the accepted one (`tasks/schema/shape.py` judges each change):

- no accepted shape yet: the live one is accepted (`accepted_by` = zonesync, first run);
- only compatible changes: the run proceeds, the live shape is accepted, and `zonesync.schema.changed` says what;
- a breaking change: the mapping stops before any row is read, written or flagged (`SchemaBreak`, one line per
  change naming zone, table, column, old and new), and `zonesync.schema.broken` is sent. It runs again once
  the change is undone, or accepted by an operator (`zonesync schema accept MAPPING`, recorded with who and when).
  The ALTER that broke it may have rewritten rows already synced (a narrowed column rounds them in place): once
  the table is mended or the change accepted, the mapping's synced rows are marked unsynced and checked again.

Only the scheduled runs (the retry sync, the end-day check) and operators change an accepted shape. A push, an
update and recovery hold the tables to it in the same way, and record only a first shape and a break: after a
compatible change they proceed and the next scheduled run records it (the HTTP API's role may not change what
is accepted).

Between a run's start and each batch's commit the tables are watched more cheaply (`tasks/schema/watch.py`).
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import ConfigError, TerminalSyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.tables import missing_table, sync_schema, utc_now
from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.reporting.events import emit_schema_change
from zonesync.tasks.schema.catalog import (
    MappingTables,
    Reflections,
    has_unique_key,
    named_table,
    reflect_table,
    require_target_columns,
    source_table,
    target_table,
)
from zonesync.tasks.schema.shape import GONE, Change, Comparison, MappingShape, compare, mapping_shape
from zonesync.tasks.schema.watch import ShapeWatch
from zonesync.tasks.zones.engines import dialect_for, in_transaction
from zonesync.tasks.zones.failures import translate

FIRST_SEEN = "the shape first seen"


class SchemaBreak(TerminalSyncError):
    """A change of a mapped table that the mapping cannot run with until it is undone or accepted."""

    reason = "schema_changed"

    def __init__(self, mapping: str, changes: list[Change]) -> None:
        lines = "; ".join(change.line() for change in changes)
        super().__init__(f"schema change: {lines}; nothing was written; {_fix(mapping, changes)}", mapping=mapping)
        self.changes = changes


def _fix(mapping: str, changes: list[Change]) -> str:
    """What an operator can do: a mapping cannot run without its columns or its key, whatever is accepted."""
    if any(change.now == GONE for change in changes):
        return "add the column back (or rename it back), or change the mapping"
    if any(change.column is None for change in changes):
        return "restore the key, or change the mapping"
    return f"undo the change, or accept it with `zonesync schema accept {mapping}`"


@dataclass(frozen=True)
class Accepted:
    """The accepted shape of a mapping's tables, and who accepted it when."""

    shape: MappingShape
    accepted_at: datetime
    accepted_by: str
    note: str
    broken_at: datetime | None = None  # when a run last stopped on a breaking change of it (None: since mended)


def operator() -> str:
    """Who is accepting: the login and the host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:100]


def accepted_shape(intranet: Engine | Connection, mapping: str) -> Accepted | None:
    """The mapping's accepted shape, or None before its first run."""
    query = sa.select(sync_schema).where(sync_schema.c.mapping == mapping)
    try:
        row = in_transaction(intranet, lambda conn: conn.execute(query).first())
    except (sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:  # "no such table" is either, by driver
        raise _missing_table(exc, mapping) from exc
    if row is None:
        return None
    return Accepted(MappingShape.from_json(row.shape), row.accepted_at, row.accepted_by, row.note, row.broken_at)


def _missing_table(exc: sa.exc.DBAPIError, mapping: str) -> Exception:
    missing = missing_table(exc, sync_schema, mapping)
    return missing or translate(exc, what="reading the accepted shape (sync_schema)", mapping=mapping)


def accept(intranet: Engine, mapping: str, shape: MappingShape, *, by: str, note: str, first: bool = False) -> None:
    """Record `shape` as the mapping's accepted shape, replacing the one before (`first`: there is none, so an
    INSERT alone, which the HTTP API's role may run too)."""
    values: dict[str, Any] = {"fingerprint": shape.fingerprint, "shape": shape.to_json(), "accepted_at": utc_now(),
                              "accepted_by": by[:100], "note": note, "broken_at": None}  # fmt: skip

    def write(conn: Connection) -> None:
        if not first:
            updated = conn.execute(sa.update(sync_schema).where(sync_schema.c.mapping == mapping).values(values))
            if updated.rowcount:
                return
        conn.execute(sa.insert(sync_schema).values(mapping=mapping, **values))

    try:
        in_transaction(intranet, write)
    except sa.exc.IntegrityError:  # another run recorded its first shape at the same moment: theirs stands
        return
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, what="recording the accepted shape (sync_schema)", mapping=mapping) from exc


def enforce(
    intranet: Engine, mapping: SyncMapping, live: MappingShape, source: Engine, *, scheduled: bool = True
) -> Comparison:
    """At a run's start: accept a first or compatible shape, stop on a breaking change (see the module docstring;
    not `scheduled`: a push, an update, recovery, which record only a break).

    A table that broke its mapping and was then mended (the change undone, a dropped column added back) may have
    lost or changed the values of rows already synced: its synced rows are marked unsynced, to be checked again.
    """
    accepted = accepted_shape(intranet, mapping.name)
    if accepted is None:
        accept(intranet, mapping.name, live, by="zonesync", note=FIRST_SEEN, first=True)
        return Comparison()
    if accepted.shape == live and accepted.broken_at is None:
        return Comparison()
    found = compare(accepted.shape, live)
    if found.breaking:
        if accepted.broken_at is None:
            _mark_broken(intranet, mapping.name)
        emit_schema_change(mapping.name, found.breaking, broken=True)
        raise SchemaBreak(mapping.name, found.breaking)
    if not scheduled:
        return found  # the next scheduled run records it (and checks a mended table's synced rows again)
    note = describe(found)
    if accepted.broken_at is not None:
        note += f"\nmended after the break of {accepted.broken_at:%Y-%m-%d %H:%M:%S} UTC: "
        note += f"{unflag_synced(mapping, source)} synced row(s) marked unsynced, to be checked again"
    accept(intranet, mapping.name, live, by="zonesync", note=note)
    emit_schema_change(mapping.name, found.changes, broken=False)
    return found


def watched_source(watch: ShapeWatch, mapping: SyncMapping, dialect: Dialect,
                   reflections: Reflections | None = None) -> sa.Table:  # fmt: skip
    """A mapping's source table as it is now, watched from before it is reflected (a change made meanwhile is seen
    at the first commit, never missed); reused from `reflections` while its catalog is the same."""
    named = named_table(mapping.source_table)
    watch.baseline(dialect, named, mapping.source_zone)

    def reflect() -> sa.Table:
        return source_table(mapping, dialect.engine)

    return (reflections or Reflections()).get(watch.found(dialect, named), reflect)


def watched_target(watch: ShapeWatch, mapping: SyncMapping, intranet: Engine, source: sa.Table,
                   source_dialect: Dialect, target_dialect: Dialect, *, scheduled: bool,
                   reflections: Reflections | None = None) -> sa.Table:  # fmt: skip
    """A mapping's target table as it is now, watched like the source, with both tables held to the contract
    (`enforce`: a breaking change raises SchemaBreak). A target column gone is the contract's to judge first.
    Reused from `reflections` (contract held) while both catalogs are the ones it was held against."""
    named = named_table(mapping.target_table)
    watch.baseline(target_dialect, named, mapping.target_zone)

    def reflect() -> sa.Table:
        target = target_table(mapping, target_dialect.engine, require=False)
        enforce(intranet, mapping, mapping_shape(mapping, source, target, source_dialect, target_dialect),
                source_dialect.engine, scheduled=scheduled)  # fmt: skip
        return require_target_columns(mapping, target)

    found = watch.found(target_dialect, named)
    both = None if found is None else (found, id(source))  # the source as reflected under its own catalog
    return (reflections or Reflections()).get(both, reflect)


def _mark_broken(intranet: Engine, mapping: str) -> None:
    statement = sa.update(sync_schema).where(sync_schema.c.mapping == mapping).values(broken_at=utc_now())
    try:
        in_transaction(intranet, lambda conn: conn.execute(statement))
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, what="recording the schema break (sync_schema)", mapping=mapping) from exc


def describe(found: Comparison) -> str:
    """The changes, one per line."""
    return "\n".join(change.line() for change in found.changes) or "no change"


@dataclass(frozen=True)
class SchemaReport:
    """A mapping's accepted shape beside its live one, what changed, and (after an acceptance) how many source rows
    were marked unsynced to be checked again."""

    mapping: str
    accepted: Accepted | None
    live: MappingShape
    comparison: Comparison
    unflagged: int = 0

    @property
    def state(self) -> str:
        """`ok`, `not accepted yet`, `N compatible change(s)` or `N breaking change(s)`."""
        if self.accepted is None:
            return "not accepted yet"
        if self.comparison.breaking:
            return f"{len(self.comparison.breaking)} breaking change(s)"
        return f"{len(self.comparison.changes)} compatible change(s)" if self.comparison.changes else "ok"


def schema_report(mapping: SyncMapping, intranet: Engine, source: Engine, target: Engine) -> SchemaReport:
    """Reflect a mapping's tables as they are and compare them with its accepted shape (reads only; a target
    column gone is shown as a change)."""
    return _report(mapping, intranet, _reflected(mapping, source, target), source, target)


def _reflected(mapping: SyncMapping, source: Engine, target: Engine) -> MappingTables:
    return MappingTables(source_table(mapping, source), target_table(mapping, target, require=False))


def _report(mapping: SyncMapping, intranet: Engine, tables: MappingTables, source: Engine,
            target: Engine) -> SchemaReport:  # fmt: skip
    live = mapping_shape(mapping, tables.source, tables.target, dialect_for(source), dialect_for(target))
    accepted = accepted_shape(intranet, mapping.name)
    comparison = compare(accepted.shape, live) if accepted is not None else Comparison()
    return SchemaReport(mapping.name, accepted, live, comparison)


def accept_live(mapping: SyncMapping, intranet: Engine, source: Engine, target: Engine, *, by: str) -> SchemaReport:
    """Accept a mapping's live shape (an operator's decision, recorded with who and when); the report of what it
    accepted.

    A breaking change of a column the mapping uses was made by an ALTER that rewrote the rows already there (a
    narrowed target column rounded the values it held): the rows already synced are marked unsynced, so that the
    next run checks every row against the accepted tables, carrying what fits and quarantining what does not.
    """
    tables = _reflected(mapping, source, target)
    report = _report(mapping, intranet, tables, source, target)
    if report.accepted is not None and not report.comparison.changes:
        return report
    require_target_columns(mapping, tables.target)  # a mapping cannot run without its columns, accepted or not
    if not has_unique_key(tables.target, mapping.keys):
        raise ConfigError(f"cannot accept: target table {mapping.target_table!r} has no primary key or unique index "
                          f"on ({', '.join(mapping.keys)}), which upserts need", mapping=mapping.name)  # fmt: skip
    note = describe(report.comparison) if report.accepted is not None else FIRST_SEEN
    unflagged = 0
    if any(change.column is not None for change in report.comparison.breaking):
        unflagged = unflag_synced(mapping, source)
        note += f"\n{unflagged} synced row(s) marked unsynced, to be checked again"
    accept(intranet, mapping.name, report.live, by=by, note=note)
    return replace(report, unflagged=unflagged)


def unflag_synced(mapping: SyncMapping, source: Engine) -> int:
    """Mark every synced (eligible) source row of a mapping unsynced; how many."""
    table = reflect_table(source, mapping.source_table, mapping.source_zone, mapping.name)
    flag = table.c[mapping.flag_column]
    eligible = [table.c[column] == value for column, value in (mapping.eligible or {}).items()]
    statement = sa.update(table).where(flag.is_(sa.true()), *eligible).values({mapping.flag_column: sa.false()})
    try:
        return int(in_transaction(source, lambda conn: conn.execute(statement).rowcount))
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, what="marking the synced rows unsynced", mapping=mapping.name) from exc
