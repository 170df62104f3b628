"""The frame of refused rows every step of a batch returns: (row position, reason code, detail)."""

from __future__ import annotations

import polars as pl

from zonesync.tasks.sync.transform import ROW

REJECT_SCHEMA = {ROW: pl.UInt32, "reason": pl.String, "detail": pl.String}
_EMPTY_REJECTS = pl.DataFrame(schema=REJECT_SCHEMA)


def no_rejects() -> pl.DataFrame:
    """An empty reject frame (without a query: building one with `rejects` costs one)."""
    return _EMPTY_REJECTS.clear()


def rejects(rows: pl.DataFrame, reason: str) -> pl.DataFrame:
    """A reject frame from (ROW, detail) rows with one reason code."""
    return rows.select(pl.col(ROW), pl.lit(reason).alias("reason"), pl.col("detail")).cast(REJECT_SCHEMA)  # type: ignore[arg-type]
