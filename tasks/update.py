"""The update with rollback (DESIGN §4.3) through a durable intent record: both zones end with the old
values or both with the new ones, whatever fails, and a crash between the two commits is repaired later.

Order: validate the updated row → write the intent (before-image) → update the source row (flag false) →
upsert the target row → flag the source row and close the intent. A target failure compensates the source
at once; a crash is repaired by `recover` (run by the flows and by `zonesync recover`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from schemas.mapping import SyncMapping
from schemas.settings import get_settings
from tasks.batch import record_keys
from tasks.bookkeeping import missing_tables
from tasks.catalog import source_table, target_table
from tasks.dialects import Dialect, dialect_for
from tasks.engines import get_engine
from tasks.errors import ConfigError, SyncError, TerminalSyncError, refusal_reason, translate
from tasks.extract import UnsyncedReader
from tasks.intents import close_intent, open_intent, unfinished_intents
from tasks.lease import LeaseBusy, holding, mapping_lease
from tasks.load import flag_rows
from tasks.records import RecordError, coerce_update, column_value
from tasks.transform import ROW, to_target_schema
from tasks.twophase import commit_both, resolve_in_doubt, upsert_one
from tasks.validate import split_valid

UpdateStatus = Literal["success", "error"]
_DECIDED = "updated in both zones; a last step failed and is completed by recovery (zonesync recover)"
# An update waits this long for a running retry sync of its mapping (they must not interleave), then is busy.
UPDATE_WAIT_SECONDS = 10.0


@dataclass
class UpdateResult:
    """What the update did: success (both zones hold the new values) or error (both hold the old ones)."""

    mapping: str
    key: dict[str, Any]
    status: UpdateStatus
    reason: str = ""
    message: str = ""


class UpdateConflict(TerminalSyncError):
    """The source row changed between reading it and updating it."""


@dataclass(frozen=True)
class Sides:
    mapping: SyncMapping
    source: sa.Table
    target: sa.Table
    source_dialect: Dialect
    target_dialect: Dialect
    reader: UnsyncedReader

    @classmethod
    def of(cls, mapping: SyncMapping) -> Sides:
        source_engine, target_engine = get_engine(mapping.source_zone), get_engine(mapping.target_zone)
        source = source_table(mapping, source_engine)
        dialect = dialect_for(source_engine)
        reader = UnsyncedReader(mapping, dialect, source)
        return cls(mapping, source, target_table(mapping, target_engine), dialect, dialect_for(target_engine), reader)

    def dialect_of(self, engine: Engine) -> Dialect:
        return self.source_dialect if engine is self.source_dialect.engine else self.target_dialect

    def two_phase(self) -> bool:
        """Two-phase commit when the settings allow it and both databases offer it."""
        return get_settings().two_phase and all(
            d.supports_two_phase() for d in (self.source_dialect, self.target_dialect)
        )

    def update_statement(
        self, key: dict[str, Any], before: dict[str, Any], changes: dict[str, Any], *, flagged: bool
    ) -> sa.Update:
        """SET the changes (and the flag) — only on the row still holding what was read."""
        unchanged = [self.source.c[n].is_not_distinct_from(v) for n, v in before.items()]
        flag = sa.true() if flagged else sa.false()
        return (
            sa.update(self.source)
            .where(*self.where_key(key), *unchanged)
            .values({**changes, self.mapping.flag_column: flag})
        )

    def where_key(self, key: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
        return [self.source.c[name] == value for name, value in key.items()]

    def read_source(self, key: dict[str, Any], conn: Connection | None = None) -> pl.DataFrame:
        """The source row as the retry sync reads it (0 or 1 rows)."""
        query = self.reader.select().where(*self.where_key(key))
        if conn is None:
            with self.source_dialect.engine.connect() as own:
                return self.source_dialect.frame_from_rows(own.execute(query).all(), self.reader.dtypes)
        return self.source_dialect.frame_from_rows(conn.execute(query).all(), self.reader.dtypes)

    def stored(self, key: dict[str, Any], columns: list[str]) -> dict[str, Any] | None:
        """The current values of some source columns, in comparable form (None: no such row)."""
        query = sa.select(*(self.source.c[name] for name in columns)).where(*self.where_key(key))
        with self.source_dialect.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return {name: column_value(self.source, self.mapping, name, row._mapping[name]) for name in columns}


def update_record(mapping: SyncMapping, key: object, changes: object) -> UpdateResult:
    """Update one source row and its target row as one unit (see the module docstring)."""
    intranet = get_engine("intranet")
    recover(intranet)
    shown_key = dict(key) if isinstance(key, dict) else {}
    try:
        sides = Sides.of(mapping)
        typed_key, typed_changes = coerce_update(sides.source, mapping, key, changes)
        with holding(intranet, mapping_lease(mapping.name), ttl=60, wait=UPDATE_WAIT_SECONDS):
            return _update(sides, intranet, typed_key, typed_changes)
    except LeaseBusy as exc:
        return UpdateResult(mapping.name, shown_key, "error", "busy", str(exc))
    except RecordError as exc:
        return UpdateResult(mapping.name, shown_key, "error", exc.reason, str(exc))
    except UpdateConflict as exc:
        return UpdateResult(mapping.name, shown_key, "error", "conflict", str(exc))
    except SyncError as exc:
        return UpdateResult(mapping.name, shown_key, "error", refusal_reason(exc), str(exc))


def _update(sides: Sides, intranet: Engine, key: dict[str, Any], changes: dict[str, Any]) -> UpdateResult:
    mapping = sides.mapping
    before_row = sides.read_source(key)
    if before_row.is_empty():
        return UpdateResult(mapping.name, key, "error", "not_found", f"no {mapping.source_table} row with key {key}")
    after_row = _with_changes(before_row, changes)
    _validate(after_row, mapping)
    _check_eligible(after_row, mapping)
    before = sides.stored(key, [*changes, mapping.flag_column])  # the flag too: a rollback restores it
    assert before is not None
    intent = open_intent(intranet, mapping.name, _record_key(after_row, mapping), before, changes)
    if sides.two_phase():
        try:
            committed = commit_both(sides, intranet, intent, key, before, changes)
        except SyncError as exc:
            close_intent(intranet, intent, "rolled_back", str(exc))
            if isinstance(exc, UpdateConflict):
                raise
            return UpdateResult(mapping.name, key, "error", refusal_reason(exc), f"rolled back: {exc}")
        if not committed:
            return UpdateResult(mapping.name, key, "success", message=_DECIDED)
        close_intent(intranet, intent, "committed")
        return UpdateResult(mapping.name, key, "success", message="updated in both zones (two-phase commit)")
    try:
        _update_source(sides, key, before, changes)
    except SyncError as exc:  # nothing was written: close the intent now rather than leave it to recovery
        close_intent(intranet, intent, "rolled_back", str(exc))
        if isinstance(exc, UpdateConflict):
            raise
        return UpdateResult(mapping.name, key, "error", refusal_reason(exc), f"refused by the source: {exc}")
    fault_point("update:after-source")
    try:
        stored_after = sides.read_source(key)
        _upsert_target(sides, stored_after)
    except SyncError as exc:
        if not _compensate(sides, key, before, changes):  # someone wrote the row meanwhile: leave it to them
            close_intent(intranet, intent, "conflict", f"{exc}; the source row changed since, left as it is")
            return UpdateResult(mapping.name, key, "error", "conflict", f"target failed and the row changed: {exc}")
        close_intent(intranet, intent, "rolled_back", str(exc))
        return UpdateResult(mapping.name, key, "error", refusal_reason(exc), f"rolled back: {exc}")
    fault_point("update:after-target")
    try:
        flag_rows(sides.source_dialect, sides.source, _guard(stored_after, mapping), mapping, sides.reader.dtypes)
    except SyncError:  # both zones hold the new values already: recovery (or the retry) sets the flag
        return UpdateResult(mapping.name, key, "success", message=_DECIDED)
    close_intent(intranet, intent, "committed")
    return UpdateResult(mapping.name, key, "success", message="updated in both zones")


def _with_changes(row: pl.DataFrame, changes: dict[str, Any]) -> pl.DataFrame:
    """The row as it will read after the update (same column types as read)."""
    return row.with_columns(
        pl.lit(value, dtype=row.schema[name]).alias(name) for name, value in changes.items() if name in row.columns
    )


def _validate(after_row: pl.DataFrame, mapping: SyncMapping) -> None:
    shaped = to_target_schema(after_row, mapping)
    if not shaped.losses.is_empty():
        raise RecordError(f"the updated row would lose data: {shaped.losses['detail'][0]}", mapping=mapping.name,
                          reason="type_loss")  # fmt: skip
    checked = split_valid(shaped.frame, mapping)
    if not checked.rejected.is_empty():
        raise RecordError(f"the updated row fails the target model: {checked.rejected['detail'][0]}",
                          mapping=mapping.name, reason="validation")  # fmt: skip


def _check_eligible(after_row: pl.DataFrame, mapping: SyncMapping) -> None:
    """A mapping with an eligibility filter only carries eligible rows: an update must leave the row eligible."""
    for column, value in (mapping.eligible or {}).items():
        if column in after_row.columns and after_row[column][0] != value:
            raise RecordError(
                f"{mapping.name} carries only rows with {column} = {value!r}; the updated row has "
                f"{column} = {after_row[column][0]!r}",
                mapping=mapping.name, reason="not_eligible",
            )  # fmt: skip


def _record_key(row: pl.DataFrame, mapping: SyncMapping) -> str:
    return str(record_keys(row, mapping)[0])


def _update_source(sides: Sides, key: dict[str, Any], before: dict[str, Any], changes: dict[str, Any]) -> None:
    """SET the changes (flag false until the target has them) — only if the row still holds what was read."""
    statement = sides.update_statement(key, before, changes, flagged=False)
    try:
        with sides.source_dialect.engine.begin() as conn:
            updated = conn.execute(statement).rowcount
    except Exception as exc:
        raise translate(exc, what="updating the source row", mapping=sides.mapping.name) from exc
    if updated != 1:
        raise UpdateConflict(
            "the source row changed while it was being updated; nothing written", mapping=sides.mapping.name
        )


def _upsert_target(sides: Sides, stored_after: pl.DataFrame) -> None:
    try:
        with sides.target_dialect.engine.begin() as conn:
            upsert_one(sides, conn, stored_after)
    except Exception as exc:
        raise translate(exc, what=f"upsert into {sides.mapping.target_zone} table {sides.target.name!r}",
                        mapping=sides.mapping.name) from exc  # fmt: skip


def _compensate(sides: Sides, key: dict[str, Any], before: dict[str, Any], changes: dict[str, Any]) -> bool:
    """Give the source row its before-image back, if it still holds the changes (nobody wrote it since)."""
    statement = (
        sa.update(sides.source)
        .where(*sides.where_key(key), *(sides.source.c[n].is_not_distinct_from(v) for n, v in changes.items()))
        .values(before)
    )
    with sides.source_dialect.engine.begin() as conn:
        return bool(conn.execute(statement).rowcount)


def _guard(row: pl.DataFrame, mapping: SyncMapping) -> pl.DataFrame:
    return row.select(list(dict.fromkeys([*mapping.source_keys, *mapping.guard_columns])))


def recover(intranet: Engine) -> list[str]:
    """Repair the updates a crash left unfinished; return one line per intent repaired."""
    from schemas.registry import all_mappings

    if missing := missing_tables(intranet):
        raise ConfigError(
            f"bookkeeping tables {', '.join(missing)} are missing in the intranet zone: run `zonesync init`"
        )
    mappings = all_mappings()
    repaired = []
    for intent in unfinished_intents(intranet):
        mapping = mappings.get(intent["mapping"])
        if mapping is None:
            continue
        try:
            with holding(intranet, mapping_lease(mapping.name), ttl=60):
                state, message = _repair(Sides.of(mapping), intent)
        except LeaseBusy:
            continue  # a run of this mapping is under way: the next flow run repairs it
        close_intent(intranet, intent["id"], state, message)
        repaired.append(f"{mapping.name} {intent['record_key']}: {state} ({message})")
    return repaired


def _repair(sides: Sides, intent: dict[str, Any]) -> tuple[Any, str]:
    """Resolve in-doubt prepared transactions; else complete the update if both zones hold the new values,
    otherwise give the source its old values back."""
    in_doubt = resolve_in_doubt(sides, intent)
    if in_doubt is not None:
        return in_doubt, "in-doubt prepared transactions " + ("committed" if in_doubt == "committed" else "rolled back")
    mapping = sides.mapping
    key = {c.source: v for c, v in zip(mapping.key_columns, json.loads(intent["record_key"]).values(), strict=True)}
    before = {n: column_value(sides.source, mapping, n, v) for n, v in json.loads(intent["before_image"]).items()}
    changes = {n: column_value(sides.source, mapping, n, v) for n, v in json.loads(intent["changes"]).items()}
    now = sides.stored(key, list(changes))
    if now is None or now == {name: before[name] for name in changes}:
        return "rolled_back", "the source update never committed"
    if now != changes:
        return "conflict", "the source row was changed by someone else since; left as it is"
    stored = sides.read_source(key)
    if _target_holds(sides, stored):
        flag_rows(sides.source_dialect, sides.source, _guard(stored, mapping), mapping, sides.reader.dtypes)
        return "committed", "both zones held the new values: completed"
    if not _compensate(sides, key, before, changes):
        return "conflict", "the source row was changed by someone else during recovery; left as it is"
    return "rolled_back", "the target never got the new values: the source was given its old values back"


def _target_holds(sides: Sides, stored: pl.DataFrame) -> bool:
    """Whether the target row equals the mapped source row (read and converted the same way)."""
    mapping = sides.mapping
    expected = to_target_schema(stored, mapping).frame.drop(ROW)
    columns = [
        sides.target_dialect.read_expression(sides.target.c[c.name], c.dtype).label(c.source) for c in mapping.columns
    ]
    where = [sides.target.c[c.name] == expected[c.name][0] for c in mapping.key_columns]
    with sides.target_dialect.engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).where(*where)).all()
    dtypes = {c.source: c.dtype for c in mapping.columns}
    actual = to_target_schema(sides.target_dialect.frame_from_rows(rows, dtypes), mapping).frame.drop(ROW)
    return actual.height == 1 and actual.equals(expected)


def fault_point(name: str) -> None:
    """Test hook: `ZONESYNC_FAULT=<name>` kills the process here, as a crash would (never set it in production)."""
    if os.environ.get("ZONESYNC_FAULT") == name:
        os._exit(70)
