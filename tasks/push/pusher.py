"""The real-time push as a plain function: the flow and the HTTP API both call it.

Insert the records into the source table (one transaction) → push the mapped, validated rows to the target
→ patch the flag. The source insert returns the rows exactly as stored, so what goes to the target and
what the flag compares against are the stored values, not the caller's spelling of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import polars as pl
import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Connection

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.registry import get_mapping
from zonesync.tasks.push.already_there import sent_again
from zonesync.tasks.push.answers import (
    ALREADY_PENDING,
    ALREADY_THERE,
    CHANGED,
    NOT_FLAGGED,
    json_keys,
    outcomes_of,
    push_result,
    source_failed,
    target_failed,
)
from zonesync.tasks.push.records import RecordError, coerce_records, json_friendly
from zonesync.tasks.push.source_insert import insert_returning
from zonesync.tasks.results import KeyOutcome, PushResult
from zonesync.tasks.schema.contract import SchemaBreak, watched_source, watched_target
from zonesync.tasks.schema.watch import SchemaChanged, ShapeWatch
from zonesync.tasks.sync.batch import BatchCarrier, SourceSide, TargetSide
from zonesync.tasks.sync.extract import UnsyncedReader
from zonesync.tasks.sync.rejects import no_rejects
from zonesync.tasks.sync.transform import ROW
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.engines import HeldConnections, dialect_for, get_engine
from zonesync.tasks.zones.failures import refusal_reason

logger = get_logger("zonesync.push")
_DUPLICATE = "duplicate_key"


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
            return rows, {i: source_failed(self.mapping, requests[i], refusal_reason(exc), exc) for i in indexes}
        for index in indexes:
            try:
                rows[index] = coerce_records(table, self.mapping, requests[index], self.source_dialect.refusal)
            except RecordError as exc:
                results[index] = source_failed(self.mapping, requests[index], exc.reason, exc)
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
                return {index: source_failed(self.mapping, requests[index], "schema_changed", exc) for index in group}
            checked, refused = self._checked(requests, group)
            return refused | (self._push_group(connections, checked, requests, again=True) if checked else {})
        except SyncError as exc:
            if len(group) > 1:
                return {i: self._push_group(connections, {i: rows}, requests, again=again)[i]
                        for i, rows in group.items()}  # fmt: skip
            (index,) = group
            reason = refusal_reason(exc)
            again_sent = self._sent_again(connections, index, group[index], requests) if reason == _DUPLICATE else None
            return {index: again_sent or source_failed(self.mapping, requests[index], reason, exc)}
        checkpoint("push:inserted")
        outcomes, stage_error = self._send(connections, raw)
        results, start = {}, 0
        for index, rows in group.items():
            results[index] = push_result(self.mapping, outcomes[start : start + len(rows)], stage_error)
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
        outcomes = {p: KeyOutcome(keys[p], "success", *ALREADY_THERE) for p in found.synced}
        outcomes |= {p: KeyOutcome(keys[p], "pending", *ALREADY_PENDING) for p in found.unsynced}
        if found.new:
            pushed = self._push_group(connections, {index: [rows[p] for p in found.new]}, requests)[index]
            if pushed.status == "error":  # the new records could not be written: nothing of the request was
                return replace(
                    pushed, outcomes=[KeyOutcome(key, "error", pushed.reason, pushed.message) for key in keys]
                )
            outcomes |= dict(zip(found.new, pushed.outcomes, strict=True))
        return push_result(self.mapping, [outcomes[position] for position in range(len(rows))], None)

    def _send(self, connections: HeldConnections, raw: pl.DataFrame) -> tuple[list[KeyOutcome], SyncError | None]:
        """Claim the rows just inserted, upsert them into the target, commit their flags (`tasks.batch`): the
        outcome of each row, and the error that stopped a step."""
        keys = json_keys(raw, self.mapping)
        try:
            target = connections.get(self.target_engine, self.mapping.target_zone)
            carrier = self.carrier
        except SyncError as exc:
            self._forget_if_changed(exc)
            return target_failed(raw, keys, self.mapping, self.intranet, exc), exc
        try:
            claim = carrier.claim(carrier.prepare(raw), connections.get(self.source_engine, self.mapping.source_zone))
        except SyncError as exc:  # inserted, but the source could not be flagged now: the cron retry carries it
            return outcomes_of(keys, no_rejects(), dict.fromkeys(range(raw.height), NOT_FLAGGED)), exc
        try:
            outcome = carrier.deliver(claim, target)
        except SyncError as exc:
            self._forget_if_changed(exc)
            return target_failed(raw, keys, self.mapping, self.intranet, exc), exc
        return outcomes_of(keys, outcome.refused, dict.fromkeys(outcome.changed[ROW].to_list(), CHANGED)), None

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
