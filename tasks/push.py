"""The real-time push (DESIGN §4.1) as a plain function: the flow and the HTTP API both call it.

Insert the records into the source table (one transaction) → push the mapped, validated rows to the target
→ patch the flag. The source insert returns the rows exactly as stored, so what goes to the target and
what the flag compares against are the stored values, not the caller's spelling of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Engine

from schemas.mapping import SyncMapping
from schemas.registry import get_mapping
from tasks.batch import quarantine_rows, send_batch
from tasks.catalog import source_table, target_table
from tasks.dialects import Dialect, dialect_for
from tasks.engines import get_engine
from tasks.errors import SyncError, refusal_reason, translate
from tasks.extract import UnsyncedReader
from tasks.load import flag_rows
from tasks.records import RecordError, coerce_records
from tasks.transform import ROW
from tasks.validate import REJECT_SCHEMA

logger = get_logger("zonesync.push")
_NOT_FLAGGED = ("not_flagged", "in the target; its flag will be set by the cron retry")
PushStatus = Literal["success", "pending", "error"]
Stage = Literal["source", "target", "flag"]


@dataclass
class KeyOutcome:
    """What happened to one record, by its key (source column names)."""

    key: dict[str, Any]
    status: PushStatus
    reason: str = ""
    detail: str = ""


@dataclass
class PushResult:
    """The answer to a push: overall status, the stage that failed (if any), and the outcome per key."""

    mapping: str
    status: PushStatus
    stage: Stage | None = None
    reason: str = ""
    message: str = ""
    outcomes: list[KeyOutcome] = field(default_factory=list)

    @property
    def keys(self) -> list[dict[str, Any]]:
        """The keys of the records, in the order they were sent."""
        return [outcome.key for outcome in self.outcomes]


def push_records(mapping_name: str, records: Sequence[dict[str, Any]]) -> PushResult:
    """Insert records into the mapping's source table and push them to its target at once."""
    return Pusher(get_mapping(mapping_name)).push(records)


class Pusher:
    """Pushes records through one mapping. Keeps the reflected tables: the HTTP API holds one per mapping, so
    a request costs its statements only (restart it after changing a table)."""

    def __init__(self, mapping: SyncMapping) -> None:
        self.mapping = mapping
        self.source_engine = get_engine(mapping.source_zone)
        self.target_engine = get_engine(mapping.target_zone)
        self.source_dialect = dialect_for(self.source_engine)
        self.target_dialect = dialect_for(self.target_engine)
        self._reader: UnsyncedReader | None = None
        self._target: sa.Table | None = None

    @property
    def reader(self) -> UnsyncedReader:
        """The source table (reflected once) with the way each column is read."""
        if self._reader is None:
            self._reader = UnsyncedReader(
                self.mapping, self.source_dialect, source_table(self.mapping, self.source_engine)
            )
        return self._reader

    @property
    def target(self) -> sa.Table:
        """The target table (reflected once it can be)."""
        if self._target is None:
            self._target = target_table(self.mapping, self.target_engine)
        return self._target

    def push(self, records: Sequence[dict[str, Any]]) -> PushResult:
        """Source insert → target upsert → flag; the result says what happened to each record."""
        mapping = self.mapping
        try:
            reader = self.reader
            rows = coerce_records(reader.table, mapping, records)
            raw = insert_returning(self.source_dialect, reader.table, rows, reader)
        except RecordError as exc:
            return _source_failed(mapping, records, exc.reason, exc)
        except SyncError as exc:
            return _source_failed(mapping, records, refusal_reason(exc), exc)
        keys = _keys(raw, mapping)
        try:
            batch = send_batch(raw, mapping, self.target, self.target_dialect, get_engine("intranet"),
                               resolve_open_errors=False)  # fmt: skip
        except SyncError as exc:
            return _target_failed(raw, keys, mapping, exc)
        try:
            flagged = flag_rows(self.source_dialect, reader.table, batch.guard, mapping, reader.dtypes)
        except SyncError as exc:
            return _outcome(mapping, keys, batch.refused, unflagged=set(range(raw.height)), stage_error=exc)
        unflagged = set(batch.refused[ROW].to_list())
        if flagged < len(batch.guard):
            unflagged |= _unflagged_rows(self.source_engine, reader.table, mapping, raw, batch.landed)
        return _outcome(mapping, keys, batch.refused, unflagged)


def insert_returning(
    dialect: Dialect, table: sa.Table, rows: list[dict[str, Any]], reader: UnsyncedReader
) -> pl.DataFrame:
    """INSERT the rows in one transaction, returning them as stored (read the way the retry sync reads)."""
    returned = reader.select().selected_columns
    statement = sa.insert(table).returning(*returned, sort_by_parameter_order=True)
    stored: list[Sequence[Any]] = []
    try:
        with dialect.engine.begin() as conn:
            for group in _by_column_set(rows):
                stored.extend(conn.execute(statement, group).all())
    except Exception as exc:
        raise translate(exc, what=f"insert into {table.name!r}", mapping=reader.mapping.name) from exc
    return dialect.frame_from_rows(stored, reader.dtypes)


def _by_column_set(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the columns they set (an executemany needs one shape), in first-seen order."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


def _source_failed(mapping: SyncMapping, records: object, reason: str, exc: SyncError) -> PushResult:
    """Nothing was written anywhere: every record (whose key can be told) is an error."""
    sent = records if isinstance(records, list) else []
    keys = [{k: r.get(k) for k in mapping.source_keys} for r in sent if isinstance(r, dict)]
    outcomes = [KeyOutcome(key, "error", reason, str(exc)) for key in keys]
    return PushResult(mapping.name, "error", "source", reason, str(exc), outcomes)


def _keys(raw: pl.DataFrame, mapping: SyncMapping) -> list[dict[str, Any]]:
    """Each stored row's key, by source column name, JSON-friendly."""
    return [json.loads(json.dumps(row, default=str)) for row in raw.select(mapping.source_keys).iter_rows(named=True)]


def _target_failed(raw: pl.DataFrame, keys: list[dict[str, Any]], mapping: SyncMapping, exc: SyncError) -> PushResult:
    """The target could not be written at all: every record is quarantined (if the intranet answers) and pending."""
    refused = pl.DataFrame({ROW: range(raw.height), "reason": "target_error", "detail": str(exc)}, schema=REJECT_SCHEMA)
    try:
        quarantine_rows(raw, refused, mapping, get_engine("intranet"))
    except SyncError as bookkeeping_error:  # the rows stay unflagged: the cron retry carries them either way
        logger.warning("%s: could not record the pending rows in sync_error: %s", mapping.name, bookkeeping_error)
    return _outcome(mapping, keys, refused, set(range(raw.height)), stage_error=exc)


def _unflagged_rows(
    engine: Engine, table: sa.Table, mapping: SyncMapping, raw: pl.DataFrame, landed: pl.DataFrame
) -> set[int]:
    """Which landed rows (by ROW) were not flagged (changed by someone else in the meantime)."""
    flag = table.c[mapping.flag_column]
    keys = [table.c[name] for name in mapping.source_keys]
    rows = raw.with_row_index(ROW).join(landed, on=ROW, how="semi")
    wanted = [tuple(row[1:]) for row in rows.select(ROW, *mapping.source_keys).iter_rows()]
    query = sa.select(*keys).where(sa.tuple_(*keys).in_(wanted), flag.is_(sa.true()))
    with engine.connect() as conn:
        flagged = {tuple(row) for row in conn.execute(query)}
    return {row[0] for row in rows.select(ROW, *mapping.source_keys).iter_rows() if tuple(row[1:]) not in flagged}


def _outcome(
    mapping: SyncMapping,
    keys: list[dict[str, Any]],
    refused: pl.DataFrame,
    unflagged: set[int],
    stage_error: SyncError | None = None,
) -> PushResult:
    """Success only if every record reached the target and was flagged; otherwise pending, with reasons per key."""
    reasons = {row: (reason, detail) for row, reason, detail in refused.iter_rows()}
    outcomes = [
        KeyOutcome(key, "pending", *reasons.get(row, _NOT_FLAGGED)) if row in unflagged else KeyOutcome(key, "success")
        for row, key in enumerate(keys)
    ]
    pending = [outcome for outcome in outcomes if outcome.status == "pending"]
    if not pending:
        return PushResult(mapping.name, "success", message=f"{len(keys)} record(s) in both zones", outcomes=outcomes)
    stage: Stage = "flag" if all(outcome.reason == "not_flagged" for outcome in pending) else "target"
    message = str(stage_error or f"{len(pending)} of {len(keys)} record(s) pending: the cron retry carries them")
    return PushResult(mapping.name, "pending", stage, pending[0].reason, message, outcomes)
