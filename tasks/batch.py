"""One batch through the target side: transform, validate, upsert, quarantine — shared by every flow.

The retry sync feeds it keyset batches; the real-time push feeds it the rows it has just inserted. Either
way the rows are given *as read from the source*, so the guard values used for flagging are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from schemas.mapping import SyncMapping
from tasks import bookkeeping
from tasks.dialects import Dialect
from tasks.errors import translate
from tasks.load import guard_frame, upsert_rows
from tasks.transform import ROW, to_target_schema
from tasks.validate import rejects, split_valid

Phase = Callable[[str], AbstractContextManager[object]]


@dataclass(frozen=True)
class BatchOutcome:
    """Rows (by ROW) that landed in the target, rows refused with (reason, detail), and the guard to flag."""

    landed: pl.DataFrame
    refused: pl.DataFrame
    guard: pl.DataFrame
    quarantined: int


def send_batch(
    raw: pl.DataFrame,
    mapping: SyncMapping,
    target: sa.Table,
    target_dialect: Dialect,
    intranet: Engine,
    *,
    resolve_open_errors: bool,
    phase: Phase = lambda _: nullcontext(),
    target_bind: Engine | Connection | None = None,
) -> BatchOutcome:
    """Transform, validate, upsert and quarantine one batch of source rows (as read); `target_bind`: a target
    connection the caller holds, else the target dialect's engine."""
    with phase("transform"):
        shaped = to_target_schema(raw, mapping)
        exact = (
            shaped.frame.join(shaped.losses.select(ROW), on=ROW, how="anti") if shaped.losses.height else shaped.frame
        )
        checked = split_valid(exact, mapping)
    with phase("upsert"):
        outcome = upsert_rows(target_dialect, target, checked.valid, mapping, target_bind)
    parts = [checked.rejected, outcome.refused]
    if shaped.losses.height:
        parts.insert(0, rejects(shaped.losses, "type_loss"))
    refused = pl.concat([part for part in parts if part.height] or parts[:1])
    with phase("quarantine"):
        quarantined = quarantine_rows(raw, refused, mapping, intranet)
        if resolve_open_errors and outcome.landed.height:
            landed_rows = raw.with_row_index(ROW).join(outcome.landed, on=ROW, how="semi")
            bookkeeping.resolve(intranet, mapping.name, record_keys(landed_rows, mapping).to_list())
    return BatchOutcome(outcome.landed, refused, guard_frame(raw, outcome.landed, mapping), quarantined)


def record_keys(raw: pl.DataFrame, mapping: SyncMapping) -> pl.Series:
    """Record keys (sync_error.record_key) named by target key columns, valued as read from the source."""
    renamed = raw.select(pl.col(c.source).alias(c.name) for c in mapping.key_columns)
    return bookkeeping.record_keys(renamed, mapping.keys)


def quarantine_rows(raw: pl.DataFrame, refused: pl.DataFrame, mapping: SyncMapping, intranet: Engine) -> int:
    """Record the refused rows of a batch in sync_error (one row per record, reasons joined)."""
    if refused.is_empty():
        return 0
    rows = raw.with_row_index(ROW).join(refused, on=ROW, how="inner")
    rows = rows.with_columns(record_keys(rows, mapping))
    merged = rows.group_by("record_key", maintain_order=True).agg(
        pl.col("reason").first(), pl.col("detail").str.join("; ")
    )
    try:
        return bookkeeping.quarantine(intranet, mapping, merged)
    except Exception as exc:
        raise translate(exc, what="recording quarantined rows in sync_error", mapping=mapping.name) from exc
