"""What a push answers for each record: success, pending with its reason, or the error that refused it."""

from __future__ import annotations

from typing import Any

import polars as pl
from prefect.logging import get_logger
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.quarantine import quarantine_rows
from zonesync.tasks.push.records import json_friendly
from zonesync.tasks.results import KeyOutcome, PushResult, Stage
from zonesync.tasks.sync.rejects import REJECT_SCHEMA
from zonesync.tasks.sync.transform import ROW
from zonesync.tasks.zones.failures import names_the_refusal

logger = get_logger("zonesync.push")
NOT_FLAGGED = ("not_flagged", "in the source zone; the cron retry carries it")


CHANGED = ("changed_in_flight", "changed in the source before it reached the target: its newer values are carried")


ALREADY_THERE = ("already_there", "identical to the record already in both zones: nothing written again")


ALREADY_PENDING = ("already_there", "identical to the record already in the source zone; the cron retry carries it")


_UNFLAGGED_REASONS = (NOT_FLAGGED[0], CHANGED[0], ALREADY_THERE[0])


def source_failed(mapping: SyncMapping, records: object, reason: str, exc: SyncError) -> PushResult:
    """Nothing was written anywhere: every record (whose key can be told) is an error."""
    if exc.public and not names_the_refusal(exc):  # the database's own words say more: they go to the log only
        logger.warning("%s: source insert refused (%s): %s", mapping.name, reason, exc)
    sent = records if isinstance(records, list) else []
    keys = [{k: json_friendly(r.get(k)) for k in mapping.source_keys} for r in sent if isinstance(r, dict)]
    outcomes = [KeyOutcome(key, "error", reason, exc.for_caller) for key in keys]
    return PushResult(mapping.name, "error", "source", reason, exc.for_caller, outcomes)


def json_keys(raw: pl.DataFrame, mapping: SyncMapping) -> list[dict[str, Any]]:
    """Each stored row's key, by source column name, JSON-friendly."""
    names = mapping.source_keys
    values = zip(*(raw.get_column(name).to_list() for name in names), strict=True)
    return [{name: json_friendly(value) for name, value in zip(names, row, strict=True)} for row in values]


def target_failed(
    raw: pl.DataFrame, keys: list[dict[str, Any]], mapping: SyncMapping, intranet: Engine, exc: SyncError
) -> list[KeyOutcome]:
    """The target could not be written at all: every record is quarantined (if the intranet answers) and pending."""
    refused = pl.DataFrame({ROW: range(raw.height), "reason": "target_error", "detail": str(exc)}, schema=REJECT_SCHEMA)
    try:
        quarantine_rows(intranet, raw, refused, mapping)
    except SyncError as bookkeeping_error:  # the rows stay unflagged: the cron retry carries them either way
        logger.warning("%s: could not record the pending rows in sync_error: %s", mapping.name, bookkeeping_error)
    return outcomes_of(keys, refused, {})


# What a caller is told about a row the target database refused (sync_error keeps the database's own message).
_TARGET_REFUSALS = {
    "constraint": "the target table does not accept the row (a unique or check constraint); it waits in sync_error",
    "target_error": "the target zone did not take the row; it waits in sync_error for the cron retry",
}


def outcomes_of(
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


def push_result(mapping: SyncMapping, outcomes: list[KeyOutcome], stage_error: SyncError | None) -> PushResult:
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
