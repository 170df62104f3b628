"""The update with rollback: both zones end with the old values or both with the new ones,
whatever fails, and a crash between the two commits is repaired later.

Order: validate the updated row → write the intent (before-image) → then either two-phase commit (both sides
prepared, the decision recorded, target committed, then source), or: clear the source flag → update the
source row and set its flag in a transaction kept open (the row stays locked) → upsert the target row →
commit the source → close the intent. Nothing is undone by hand: a refusal rolls the open source transaction
back, and a crash is repaired by `recover` (tasks/update/recovery.py; run by the flows and by `zonesync recover`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.lease import LeaseBusy, holding, mapping_lease
from zonesync.tasks.bookkeeping.quarantine import source_record_keys
from zonesync.tasks.push.records import RecordError, coerce_update, column_value, json_friendly
from zonesync.tasks.results import UpdateResult
from zonesync.tasks.sync.transform import ROW, to_target_schema
from zonesync.tasks.sync.validate import split_valid
from zonesync.tasks.update.intents import close_intent, open_intent
from zonesync.tasks.update.recovery import recover_intents
from zonesync.tasks.update.sides import Sides, UpdateConflict
from zonesync.tasks.update.twophase import commit_both, upsert_one
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.engines import get_engine, in_transaction
from zonesync.tasks.zones.failures import names_the_refusal, refusal_reason, translate

logger = get_logger("zonesync.update")


_DECIDED = "updated in both zones; a last step failed and is completed by recovery (zonesync recover)"
_UNDECIDED = "recovery (zonesync recover, or the next flow run) gives both zones the source's values"
# An update waits this long for a running retry sync of its mapping, then is busy: one writer at a time spares both
# the lock waits of their claims (correctness does not rest on it: tasks/sync/batch.py).
UPDATE_WAIT_SECONDS = 10.0


def update_record(mapping: SyncMapping, key: object, changes: object) -> UpdateResult:
    """Update one source row and its target row as one unit (see the module docstring)."""
    intranet = get_engine("intranet")
    shown_key = {name: json_friendly(value) for name, value in key.items()} if isinstance(key, dict) else {}
    try:
        recover_intents(intranet)
        sides = Sides.of(mapping)
        typed_key, typed_changes = coerce_update(sides.source, mapping, key, changes, sides.source_dialect.refusal)
        with holding(intranet, mapping_lease(mapping.name), ttl=60, wait=UPDATE_WAIT_SECONDS, keep_alive=True):
            return _update(sides, intranet, typed_key, typed_changes)
    except ANSWERED as exc:
        return answered(mapping, shown_key, exc)


# What an update or a delete with rollback answers as a result rather than raises.
ANSWERED = (LeaseBusy, RecordError, SyncError, sa.exc.SQLAlchemyError)


def answered(mapping: SyncMapping, key: dict[str, Any], exc: BaseException, *, verb: str = "update") -> UpdateResult:
    """The result of an update (or a delete) stopped by `exc`, one of ANSWERED."""
    if isinstance(exc, LeaseBusy):
        return UpdateResult(mapping.name, key, "error", "busy", str(exc))
    if isinstance(exc, RecordError):
        return UpdateResult(mapping.name, key, "error", exc.reason, str(exc))
    if isinstance(exc, UpdateConflict):
        return UpdateResult(mapping.name, key, "error", "conflict", str(exc))
    if isinstance(exc, SyncError):
        return refused(mapping, key, exc, verb=verb)
    # the intents and leases, in the intranet zone
    return refused(mapping, key, translate(exc, what=f"{verb} bookkeeping", mapping=mapping.name), verb=verb)


def refused(mapping: SyncMapping, key: dict[str, Any], exc: SyncError, done: str = "", *, verb: str = "update"
            ) -> UpdateResult:  # fmt: skip
    """An update (or a delete) that a zone refused or failed: the reason code and zonesync's words, which name the
    columns and the constraint; the database's own message goes to the log, as a warning when it says more."""
    level = logging.DEBUG if names_the_refusal(exc) else logging.WARNING
    logger.log(level, "%s: %s of %s %s: %s", mapping.name, verb, mapping.shown_key(key), done.rstrip(": ") or "refused",
               exc)  # fmt: skip
    return UpdateResult(mapping.name, key, "error", refusal_reason(exc), f"{done}{exc.for_caller}")


def _update(sides: Sides, intranet: Engine, key: dict[str, Any], changes: dict[str, Any]) -> UpdateResult:
    mapping = sides.mapping
    before_row = sides.read_source(key)
    if before_row.is_empty():
        missing = f"no {mapping.source_table} row with key {mapping.shown_key(key)}"
        return UpdateResult(mapping.name, key, "error", "not_found", missing)
    changes = {**changes, **_version_bump(sides, before_row, changes)}
    after_row = _with_changes(before_row, changes)
    _validate(after_row, sides)
    _check_eligible(after_row, mapping)
    before = sides.stored(key, list(changes), raw=True)
    assert before is not None
    intent = open_intent(intranet, mapping.name, _record_key(after_row, mapping), sides.comparable(before), changes)
    if sides.two_phase():
        return _two_phase(sides, intranet, intent, key, before, changes)
    return _with_intent(sides, intranet, intent, key, before, changes)


def _two_phase(sides: Sides, intranet: Engine, intent: int, key: dict[str, Any], before: dict[str, Any],
               changes: dict[str, Any]) -> UpdateResult:  # fmt: skip
    """Prepare both sides, record the decision, commit both (tasks/update/twophase.py)."""
    mapping = sides.mapping
    try:
        committed = commit_both(sides, intranet, intent, key, before, changes)
    except SyncError as exc:
        close_intent(intranet, intent, "rolled_back", str(exc))
        if isinstance(exc, UpdateConflict):
            raise
        return refused(mapping, key, exc, "rolled back: ")
    if not committed:
        return UpdateResult(mapping.name, key, "success", message=_DECIDED)
    close_intent(intranet, intent, "committed")
    return UpdateResult(mapping.name, key, "success", message="updated in both zones (two-phase commit)")


def _with_intent(sides: Sides, intranet: Engine, intent: int, key: dict[str, Any], before: dict[str, Any],
                 changes: dict[str, Any]) -> UpdateResult:  # fmt: skip
    """Without two-phase commit: the source row is updated (and flagged) in a transaction that stays open — so
    it stays locked — while the target is written; it commits only once the target has the new values.

    Its flag is cleared first, in a transaction of its own: if the process dies between the target's commit
    and the source's, the row reads "not synced" (never flagged with values the target no longer holds), and
    recovery sends the source's values again.
    """
    mapping = sides.mapping
    try:
        _clear_flag(sides, key)
    except SyncError as exc:  # nothing was written: close the intent now rather than leave it to recovery
        close_intent(intranet, intent, "rolled_back", str(exc))
        return refused(mapping, key, exc, "refused by the source: ")
    checkpoint("update:flag-cleared")
    with sides.source_dialect.engine.connect() as conn:
        transaction = conn.begin()
        try:
            stored_after = _update_source(sides, conn, key, before, changes)
        except SyncError as exc:
            _roll_back(sides, intranet, transaction, intent, key, exc)
            if isinstance(exc, UpdateConflict):
                raise
            return refused(mapping, key, exc, "refused by the source: ")
        checkpoint("update:source-written")
        try:
            _upsert_target(sides, stored_after)
        except SyncError as exc:
            _roll_back(sides, intranet, transaction, intent, key, exc)
            return refused(mapping, key, exc, "rolled back: ")
        checkpoint("update:after-target")
        try:
            transaction.commit()
        except Exception as exc:  # the target has the new values, the source (most likely) not: recovery decides
            error = translate(exc, what="committing the source row", mapping=mapping.name)
            logger.warning("%s: update of %s undecided: %s", mapping.name, mapping.shown_key(key), error)
            return UpdateResult(mapping.name, key, "error", refusal_reason(error), f"{error.for_caller}; {_UNDECIDED}")
    checkpoint("update:committed")
    close_intent(intranet, intent, "committed")
    return UpdateResult(mapping.name, key, "success", message="updated in both zones")


def _roll_back(sides: Sides, intranet: Engine, transaction: Any, intent: int, key: dict[str, Any],
               exc: SyncError) -> None:  # fmt: skip
    """Undo an update refused by either zone: roll the source back, close the intent, and send the row again so
    that it is flagged as it was (if the target cannot take even that now, it stays for the cron retry)."""
    transaction.rollback()
    close_intent(intranet, intent, "rolled_back", str(exc))
    try:
        sides.resend(key, intranet)
    except SyncError as resend_error:
        logger.warning("%s: the row stays unflagged for the cron retry: %s", sides.mapping.name, resend_error)


def _version_bump(sides: Sides, row: pl.DataFrame, changes: dict[str, Any]) -> dict[str, Any]:
    """The writers' contract: a change moves the mapping's version column on (unless the caller set it)."""
    version = sides.mapping.version_column
    if version is None or version in changes:
        return {}
    current = row[version][0]
    dtype = row.schema[version]
    if dtype.is_integer():
        return {version: (current or 0) + 1}
    declared = sides.reader.dtypes.get(version)
    if isinstance(declared, pl.Datetime) or isinstance(dtype, pl.Datetime):
        now = datetime.now(UTC)
        previous = _as_moment(current)
        moment = max(now, previous + timedelta(microseconds=1)) if previous is not None else now
        return {version: column_value(sides.source, sides.mapping, version, moment.isoformat())}
    return {}


def _as_moment(value: Any) -> datetime | None:
    """A stored version timestamp (a datetime, or ISO text on SQLite) as an aware UTC datetime."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _with_changes(row: pl.DataFrame, changes: dict[str, Any]) -> pl.DataFrame:
    """The row as it will read after the update (same column types as read)."""
    return row.with_columns(
        pl.lit(value, dtype=row.schema[name]).alias(name) for name, value in changes.items() if name in row.columns
    )


def _validate(after_row: pl.DataFrame, sides: Sides) -> None:
    """The updated row as the target will hold it: exact, valid for the model, and kept as is by the live target
    table's columns (checked before anything is written)."""
    mapping = sides.mapping
    shaped = to_target_schema(after_row, mapping)
    if not shaped.losses.is_empty():
        raise RecordError(f"the updated row would lose data: {shaped.losses['detail'][0]}", mapping=mapping.name,
                          reason="type_loss")  # fmt: skip
    checked = split_valid(shaped.frame, mapping)
    if not checked.rejected.is_empty():
        raise RecordError(f"the updated row fails the target model: {checked.rejected['detail'][0]}",
                          mapping=mapping.name, reason="validation")  # fmt: skip
    altered = sides.target_dialect.inexact_rows(sides.target, checked.valid, ROW)
    if not altered.is_empty():
        raise RecordError(f"the target zone would not keep the updated row exactly: {altered['detail'][0]}",
                          mapping=mapping.name, reason="type_loss")  # fmt: skip


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
    return str(source_record_keys(row, mapping)[0])


def _clear_flag(sides: Sides, key: dict[str, Any]) -> None:
    try:
        in_transaction(sides.source_dialect.engine, lambda conn: conn.execute(sides.clear_flag_statement(key)))
    except Exception as exc:
        raise translate(exc, what="clearing the source row's flag", mapping=sides.mapping.name) from exc


def _update_source(
    sides: Sides, conn: Connection, key: dict[str, Any], before: dict[str, Any], changes: dict[str, Any]
) -> pl.DataFrame:
    """SET the changes and the flag — only on the row still holding what was read; the row as stored."""
    try:
        updated = conn.execute(sides.update_statement(key, before, changes)).rowcount
        if updated == 1:
            sides.verify_source(conn)
            return sides.read_source(key, conn)
    except Exception as exc:
        raise translate(exc, what="updating the source row", mapping=sides.mapping.name) from exc
    raise UpdateConflict(
        "the source row changed while it was being updated; nothing written", mapping=sides.mapping.name
    )


def _upsert_target(sides: Sides, stored_after: pl.DataFrame) -> None:
    try:
        in_transaction(sides.target_dialect.engine, lambda conn: upsert_one(sides, conn, stored_after))
    except Exception as exc:
        raise translate(exc, what=f"upsert into {sides.mapping.target_zone} table {sides.target.name!r}",
                        mapping=sides.mapping.name) from exc  # fmt: skip
