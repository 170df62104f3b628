"""Validate target-shaped rows against the mapping's Pandera model; bad rows are split off, never dropped."""

from __future__ import annotations

from dataclasses import dataclass

import pandera.errors as pa_errors
import polars as pl

from schemas.mapping import SyncMapping
from tasks.errors import TerminalSyncError
from tasks.transform import ROW

REJECT_SCHEMA = {ROW: pl.UInt32, "reason": pl.String, "detail": pl.String}
_MAX_VALUE_CHARS = 60


@dataclass(frozen=True)
class Validated:
    """Rows that passed every check, and (row, reason, detail) for the rows that did not."""

    valid: pl.DataFrame
    rejected: pl.DataFrame


def rejects(rows: pl.DataFrame, reason: str) -> pl.DataFrame:
    """A reject frame from (ROW, detail) rows with one reason code."""
    return rows.select(pl.col(ROW), pl.lit(reason).alias("reason"), pl.col("detail")).cast(REJECT_SCHEMA)  # type: ignore[arg-type]


def split_valid(frame: pl.DataFrame, mapping: SyncMapping) -> Validated:
    """Check `frame` (with a ROW column) against the model; duplicate keys in one batch are rejected too."""
    duplicates = frame.filter(pl.struct(list(mapping.keys)).is_duplicated())
    rejected = [rejects(duplicates.select(ROW, pl.lit("key appears more than once").alias("detail")), "duplicate_key")]
    candidates = frame.join(duplicates.select(ROW), on=ROW, how="anti") if duplicates.height else frame
    try:
        mapping.model.validate(candidates.drop(ROW), lazy=True)
    except pa_errors.SchemaErrors as exc:
        failed = _failed_checks(exc.failure_cases, candidates, mapping)
        rejected.append(failed)
        candidates = candidates.join(failed.select(ROW), on=ROW, how="anti")
    return Validated(candidates, pl.concat(rejected))


def _failed_checks(cases: pl.DataFrame, batch: pl.DataFrame, mapping: SyncMapping) -> pl.DataFrame:
    """One reject row per failing record, the failed checks joined into a readable detail."""
    if cases["index"].is_null().any():
        frame_level = cases.filter(pl.col("index").is_null())
        checks = ", ".join(f"{c} {k}" for c, k in frame_level.select("column", "check").unique().rows())
        raise TerminalSyncError(f"batch does not match the target model ({checks})", mapping=mapping.name)
    value = pl.col("failure_case").cast(pl.String).fill_null("null").str.slice(0, _MAX_VALUE_CHARS)
    described = cases.select(
        pl.col("index").cast(pl.UInt32),
        pl.format("{}: {} (got {})", pl.col("column").fill_null("row"), pl.col("check"), value).alias("detail"),
    )
    per_row = described.group_by("index", maintain_order=True).agg(
        pl.col("detail").unique(maintain_order=True).str.join("; ")
    )
    positions = batch.select(ROW).with_row_index("index")
    return rejects(per_row.join(positions, on="index").select(ROW, "detail"), "validation")
