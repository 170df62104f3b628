"""The real-time push as a plain function: the flow and the HTTP API both call it.

Insert the records into the source table (one transaction) → push the mapped, validated rows to the target
→ patch the flag. The source insert returns the rows exactly as stored, so what goes to the target and
what the flag compares against are the stored values, not the caller's spelling of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.registry import get_mapping
from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.push.already_there import instant, key_in, sent_again
from zonesync.tasks.push.records import RecordError, coerce_records, json_friendly
from zonesync.tasks.results import KeyOutcome, PushResult, Stage
from zonesync.tasks.schema.contract import SchemaBreak, watched_source, watched_target
from zonesync.tasks.schema.watch import SchemaChanged, ShapeWatch
from zonesync.tasks.sync.batch import BatchCarrier, SourceSide, TargetSide, quarantine_rows
from zonesync.tasks.sync.extract import UnsyncedReader
from zonesync.tasks.sync.rejects import REJECT_SCHEMA, no_rejects
from zonesync.tasks.sync.transform import ROW
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.engines import HeldConnections, dialect_for, get_engine, in_transaction
from zonesync.tasks.zones.failures import refusal_reason, translate

logger = get_logger("zonesync.push")
_NOT_FLAGGED = ("not_flagged", "in the source zone; the cron retry carries it")
_CHANGED = ("changed_in_flight", "changed in the source before it reached the target: its newer values are carried")
_ALREADY_THERE = ("already_there", "identical to the record already in both zones: nothing written again")
_ALREADY_PENDING = ("already_there", "identical to the record already in the source zone; the cron retry carries it")
_UNFLAGGED_REASONS = (_NOT_FLAGGED[0], _CHANGED[0], _ALREADY_THERE[0])
_DUPLICATE = "duplicate_key"
_READ_BACK_CHUNK = 1000  # keys per SELECT when inserted rows are read back


def push_records(mapping_name: str, records: Sequence[dict[str, Any]]) -> PushResult:
    """Insert records into the mapping's source table and push them to its target at once."""
    return Pusher(get_mapping(mapping_name)).push(records)


class Pusher:
    """Pushes records through one mapping. Keeps the reflected tables: the HTTP API holds one per mapping, so a
    request costs its statements and three catalog queries, one in each transaction that writes (the watch: a
    table changed since it was reflected rolls that write back, and the tables are reflected again and held to
    the schema contract)."""

    def __init__(self, mapping: SyncMapping) -> None:
        self.mapping = mapping
        self.source_engine = get_engine(mapping.source_zone)
        self.target_engine = get_engine(mapping.target_zone)
        self.intranet = get_engine("intranet")
        self.source_dialect = dialect_for(self.source_engine)
        self.target_dialect = dialect_for(self.target_engine)
        self.watch = ShapeWatch(mapping.name)
        self._reader: UnsyncedReader | None = None
        self._target: sa.Table | None = None
        self._insert: sa.Insert | None = None
        self._carrier: BatchCarrier | None = None

    @property
    def reader(self) -> UnsyncedReader:
        """The source table (reflected once, and again after a change) with the way each column is read."""
        if self._reader is None:
            source = watched_source(self.watch, self.mapping, self.source_dialect)
            self._reader = UnsyncedReader(self.mapping, self.source_dialect, source)
        return self._reader

    @property
    def target(self) -> sa.Table:
        """The target table (reflected once it can be, and again after a change), both held to the schema contract."""
        if self._target is None:
            self._target = watched_target(self.watch, self.mapping, self.intranet, self.reader.table,
                                          self.source_dialect, self.target_dialect, scheduled=False)  # fmt: skip
        return self._target

    @property
    def carrier(self) -> BatchCarrier:
        """Carries the inserted rows to the target (`tasks.batch`), built once the target table can be reflected."""
        if self._carrier is None:
            reader = self.reader
            self._carrier = BatchCarrier(
                self.mapping, SourceSide(reader.table, self.source_dialect, reader.dtypes),
                TargetSide(self.target, self.target_dialect), self.intranet, watch=self.watch,
            )  # fmt: skip
        return self._carrier

    @property
    def insert(self) -> sa.Insert:
        """INSERT into the source table RETURNING the rows as the retry sync reads them, in the order given."""
        if self._insert is None:
            returned = self.reader.select().selected_columns
            self._insert = sa.insert(self.reader.table).returning(*returned, sort_by_parameter_order=True)
        return self._insert

    def push(self, records: Sequence[dict[str, Any]]) -> PushResult:
        """Source insert → target upsert → flag; the result says what happened to each record."""
        return self.push_many([records])[0]

    def push_many(self, requests: Sequence[object]) -> list[PushResult]:
        """Push several requests' records together where they can be; each request gets its own result, the same
        as if it had been pushed alone (a request that cannot be written changes nothing for the others)."""
        rows, results = self._checked(requests, range(len(requests)))
        with HeldConnections(self.mapping.name) as connections:
            for group in _rounds(rows, self.mapping.source_keys):
                results.update(self._push_group(connections, group, requests))
        return [results[index] for index in range(len(requests))]

    def _checked(
        self, requests: Sequence[object], indexes: Iterable[int]
    ) -> tuple[dict[int, list[dict[str, Any]]], dict[int, PushResult]]:
        """The records of each request checked against the live source table, or the request's refusal."""
        results: dict[int, PushResult] = {}
        rows: dict[int, list[dict[str, Any]]] = {}
        try:
            table = self.reader.table
        except SyncError as exc:
            return rows, {i: _source_failed(self.mapping, requests[i], refusal_reason(exc), exc) for i in indexes}
        for index in indexes:
            try:
                rows[index] = coerce_records(table, self.mapping, requests[index], self.source_dialect.refusal)
            except RecordError as exc:
                results[index] = _source_failed(self.mapping, requests[index], exc.reason, exc)
        return rows, results

    def forget_tables(self) -> None:
        """Reflect both tables again at the next request (one of them changed)."""
        self._reader = self._target = self._insert = self._carrier = None

    def _verify_source(self, conn: Connection) -> None:
        self.watch.verify(conn, self.source_dialect, self.reader.table, self.mapping.source_zone)

    def _push_group(
        self, connections: HeldConnections, group: dict[int, list[dict[str, Any]]], requests: Sequence[object],
        *, again: bool = False,
    ) -> dict[int, PushResult]:  # fmt: skip
        """One source transaction for the group's rows; if it fails, each request alone (so each gets its answer).
        The source table changed since it was reflected: the insert rolls back, and the records are checked again
        against the table as it is now and inserted once more."""
        try:
            source = connections.get(self.source_engine, self.mapping.source_zone)
            verify = self._verify_source
            raw = insert_returning(self.source_dialect, self.insert, _joined(group), self.reader, source, verify)
        except SchemaChanged as exc:
            self.forget_tables()
            if again:
                return {index: _source_failed(self.mapping, requests[index], "schema_changed", exc) for index in group}
            checked, refused = self._checked(requests, group)
            return refused | (self._push_group(connections, checked, requests, again=True) if checked else {})
        except SyncError as exc:
            if len(group) > 1:
                return {i: self._push_group(connections, {i: rows}, requests, again=again)[i]
                        for i, rows in group.items()}  # fmt: skip
            (index,) = group
            reason = refusal_reason(exc)
            again_sent = self._sent_again(connections, index, group[index], requests) if reason == _DUPLICATE else None
            return {index: again_sent or _source_failed(self.mapping, requests[index], reason, exc)}
        checkpoint("push:inserted")
        outcomes, stage_error = self._send(connections, raw)
        results, start = {}, 0
        for index, rows in group.items():
            results[index] = _result(self.mapping, outcomes[start : start + len(rows)], stage_error)
            start += len(rows)
        return results

    def _sent_again(
        self, connections: HeldConnections, index: int, rows: list[dict[str, Any]], requests: Sequence[object]
    ) -> PushResult | None:
        """A request refused for a duplicate key whose records are each new or identical to the row stored
        (`already_there.py`): the new ones pushed, the others answered as already there. None: refused whole."""
        try:
            found = sent_again(connections.get(self.source_engine, self.mapping.source_zone), self.reader.table,
                               self.mapping, rows)  # fmt: skip
        except (SyncError, sa.exc.SQLAlchemyError) as exc:
            logger.warning("%s: could not compare a duplicate record with the stored one: %s", self.mapping.name, exc)
            return None
        if found is None:
            return None
        keys = [{name: json_friendly(row[name]) for name in self.mapping.source_keys} for row in rows]
        outcomes = {p: KeyOutcome(keys[p], "success", *_ALREADY_THERE) for p in found.synced}
        outcomes |= {p: KeyOutcome(keys[p], "pending", *_ALREADY_PENDING) for p in found.unsynced}
        if found.new:
            pushed = self._push_group(connections, {index: [rows[p] for p in found.new]}, requests)[index]
            if pushed.status == "error":  # the new records could not be written: nothing of the request was
                return replace(
                    pushed, outcomes=[KeyOutcome(key, "error", pushed.reason, pushed.message) for key in keys]
                )
            outcomes |= dict(zip(found.new, pushed.outcomes, strict=True))
        return _result(self.mapping, [outcomes[position] for position in range(len(rows))], None)

    def _send(self, connections: HeldConnections, raw: pl.DataFrame) -> tuple[list[KeyOutcome], SyncError | None]:
        """Claim the rows just inserted, upsert them into the target, commit their flags (`tasks.batch`): the
        outcome of each row, and the error that stopped a step."""
        keys = _keys(raw, self.mapping)
        try:
            target = connections.get(self.target_engine, self.mapping.target_zone)
            carrier = self.carrier
        except SyncError as exc:
            self._forget_if_changed(exc)
            return _target_failed(raw, keys, self.mapping, self.intranet, exc), exc
        try:
            claim = carrier.claim(carrier.prepare(raw), connections.get(self.source_engine, self.mapping.source_zone))
        except SyncError as exc:  # inserted, but the source could not be flagged now: the cron retry carries it
            return _outcomes(keys, no_rejects(), dict.fromkeys(range(raw.height), _NOT_FLAGGED)), exc
        try:
            outcome = carrier.deliver(claim, target)
        except SyncError as exc:
            self._forget_if_changed(exc)
            return _target_failed(raw, keys, self.mapping, self.intranet, exc), exc
        return _outcomes(keys, outcome.refused, dict.fromkeys(outcome.changed[ROW].to_list(), _CHANGED)), None

    def _forget_if_changed(self, exc: SyncError) -> None:
        """A table changed, or broke the schema contract: the next request reflects and examines both again."""
        if isinstance(exc, SchemaChanged | SchemaBreak):
            self.forget_tables()


def _rounds(requests: dict[int, list[dict[str, Any]]], keys: Sequence[str]) -> list[dict[int, list[dict[str, Any]]]]:
    """Requests in rounds pushed one after another: no two requests of a round share a key, and a request comes
    after every earlier request that shares a key with it (as if each had been pushed alone, in order)."""
    rounds: list[dict[int, list[dict[str, Any]]]] = []
    last_round: dict[tuple[Any, ...], int] = {}
    for index, rows in requests.items():
        own = {tuple(row[key] for key in keys) for row in rows}
        number = max((last_round[key] + 1 for key in own if key in last_round), default=0)
        if number == len(rounds):
            rounds.append({})
        rounds[number][index] = rows
        last_round.update(dict.fromkeys(own, number))
    return rounds


def _joined(group: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [row for rows in group.values() for row in rows]


def insert_returning(
    dialect: Dialect, statement: sa.Insert, rows: list[dict[str, Any]], reader: UnsyncedReader, bind: Connection,
    verify: Callable[[Connection], None],
) -> pl.DataFrame:  # fmt: skip
    """INSERT the rows in one transaction with `statement` (`Pusher.insert`), returning them as stored and in the
    order given (read the way the retry sync reads); `verify` runs before the commit (the table is as reflected)."""

    def insert(conn: Connection) -> list[Sequence[Any]]:
        stored: list[Sequence[Any]] = [()] * len(rows)
        for positions in _by_column_set(rows):
            inserted = _inserted(conn, dialect, statement, [rows[position] for position in positions], reader)
            for position, row in zip(positions, inserted, strict=True):
                stored[position] = row
        verify(conn)
        return stored

    try:
        stored = in_transaction(bind, insert)
    except Exception as exc:
        raise translate(exc, what=f"insert into {reader.table.name!r}", mapping=reader.mapping.name) from exc
    return dialect.frame_from_rows(stored, reader.dtypes)


def _inserted(
    conn: Connection, dialect: Dialect, statement: sa.Insert, rows: list[dict[str, Any]], reader: UnsyncedReader
) -> Sequence[Sequence[Any]]:
    """INSERT rows that set the same columns; the rows as stored, in the order given: RETURNING them, or read
    back by key in the same transaction where RETURNING would need SELECT of a column zonesync may not read
    (MariaDB checks every inserted column; the generated grants give only the carried ones)."""
    if not dialect.returning_reads_inserted_columns or set(rows[0]) <= set(reader.mapping.carried_source_columns):
        return conn.execute(statement, rows).all()
    conn.execute(sa.insert(reader.table), rows)
    names = reader.mapping.source_keys
    read = reader.select()
    width = len(read.selected_columns)
    query = read.add_columns(*(reader.table.c[name] for name in names))
    keys = [tuple(row[name] for name in names) for row in rows]
    found: dict[tuple[Any, ...], Sequence[Any]] = {}
    for start in range(0, len(keys), _READ_BACK_CHUNK):
        chunk = keys[start : start + _READ_BACK_CHUNK]
        for row in conn.execute(query.where(key_in(reader.table, names, chunk))):
            found[_instants(tuple(row[width:]))] = tuple(row[:width])
    return [found[_instants(key)] for key in keys]


def _instants(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A key as it compares (and hashes) with the stored one: a timestamp by its instant."""
    return tuple(instant(value) if isinstance(value, datetime) else value for value in key)


def _by_column_set(rows: list[dict[str, Any]]) -> list[list[int]]:
    """Positions of the rows grouped by the columns they set (an executemany needs one shape), first-seen order."""
    groups: dict[frozenset[str], list[int]] = {}
    for position, row in enumerate(rows):
        groups.setdefault(frozenset(row), []).append(position)
    return list(groups.values())


def _source_failed(mapping: SyncMapping, records: object, reason: str, exc: SyncError) -> PushResult:
    """Nothing was written anywhere: every record (whose key can be told) is an error."""
    if exc.public:  # a database's refusal: its own words go to the log only
        logger.warning("%s: source insert refused (%s): %s", mapping.name, reason, exc)
    sent = records if isinstance(records, list) else []
    keys = [{k: json_friendly(r.get(k)) for k in mapping.source_keys} for r in sent if isinstance(r, dict)]
    outcomes = [KeyOutcome(key, "error", reason, exc.for_caller) for key in keys]
    return PushResult(mapping.name, "error", "source", reason, exc.for_caller, outcomes)


def _keys(raw: pl.DataFrame, mapping: SyncMapping) -> list[dict[str, Any]]:
    """Each stored row's key, by source column name, JSON-friendly."""
    names = mapping.source_keys
    values = zip(*(raw.get_column(name).to_list() for name in names), strict=True)
    return [{name: json_friendly(value) for name, value in zip(names, row, strict=True)} for row in values]


def _target_failed(
    raw: pl.DataFrame, keys: list[dict[str, Any]], mapping: SyncMapping, intranet: Engine, exc: SyncError
) -> list[KeyOutcome]:
    """The target could not be written at all: every record is quarantined (if the intranet answers) and pending."""
    refused = pl.DataFrame({ROW: range(raw.height), "reason": "target_error", "detail": str(exc)}, schema=REJECT_SCHEMA)
    try:
        quarantine_rows(intranet, raw, refused, mapping)
    except SyncError as bookkeeping_error:  # the rows stay unflagged: the cron retry carries them either way
        logger.warning("%s: could not record the pending rows in sync_error: %s", mapping.name, bookkeeping_error)
    return _outcomes(keys, refused, {})


# What a caller is told about a row the target database refused (sync_error keeps the database's own message).
_TARGET_REFUSALS = {
    "constraint": "the target table does not accept the row (a unique or check constraint); it waits in sync_error",
    "target_error": "the target zone did not take the row; it waits in sync_error for the cron retry",
}


def _outcomes(
    keys: list[dict[str, Any]], refused: pl.DataFrame, unflagged: dict[int, tuple[str, str]]
) -> list[KeyOutcome]:
    """Per row: success if it reached the target and was flagged; otherwise pending, with its reason."""
    reasons = {
        row: (reason, _TARGET_REFUSALS.get(reason, detail)) for row, reason, detail in refused.iter_rows()
    } | unflagged
    return [
        KeyOutcome(key, "pending", *reasons[row]) if row in reasons else KeyOutcome(key, "success")
        for row, key in enumerate(keys)
    ]


def _result(mapping: SyncMapping, outcomes: list[KeyOutcome], stage_error: SyncError | None) -> PushResult:
    """Success only if every record reached the target and was flagged; otherwise pending, with reasons per key."""
    pending = [outcome for outcome in outcomes if outcome.status == "pending"]
    if not pending:
        return PushResult(
            mapping.name, "success", message=f"{len(outcomes)} record(s) in both zones", outcomes=outcomes
        )
    stage: Stage = "flag" if all(outcome.reason in _UNFLAGGED_REASONS for outcome in pending) else "target"
    if stage_error is not None:
        logger.warning("%s: records pending at stage %s: %s", mapping.name, stage, stage_error)
    message = (
        stage_error.for_caller
        if stage_error
        else f"{len(pending)} of {len(outcomes)} record(s) pending: the cron retry carries them"
    )
    return PushResult(mapping.name, "pending", stage, pending[0].reason, message, outcomes)
