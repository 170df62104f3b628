"""Write a batch to the target zone (its rows already claimed in the source: tasks/sync/batch.py).

A batch that the target refuses because of some of its rows (a constraint, a value the column cannot
hold) is split in halves until the offending rows are isolated: they are quarantined, the rest land.
Errors that concern the whole statement (missing column, permissions, connection) are not split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import RefusedValue, SyncError, short_message
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.deletes.policies import revive
from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.sync.rejects import REJECT_SCHEMA, no_rejects
from zonesync.tasks.sync.transform import ROW
from zonesync.tasks.zones.engines import in_transaction
from zonesync.tasks.zones.failures import (
    is_transient,
    names_the_refusal,
    refusal_reason,
    refusal_words,
    refused_at,
    row_error_kind,
    translate,
)

T = TypeVar("T")


@dataclass(frozen=True)
class UpsertOutcome:
    """Which rows landed in the target (by ROW) and which were refused, with the database's reason."""

    landed: pl.DataFrame
    refused: pl.DataFrame


def _is_row_level(exc: BaseException) -> bool:
    """Errors that some rows cause and others would not (so splitting the batch helps)."""
    if isinstance(exc, SyncError):
        return isinstance(exc, RefusedValue)
    return row_error_kind(exc) is not None and not is_transient(exc)


def upsert_rows(
    dialect: Dialect,
    target: sa.Table,
    frame: pl.DataFrame,
    mapping: SyncMapping,
    bind: Engine | Connection | None = None,
    within: Callable[[Connection, int], None] | None = None,
) -> UpsertOutcome:
    """Upsert `frame` (ROW + target columns); isolate and refuse the rows the target will not take.

    `bind`: a target connection the caller holds (the push), else one of the dialect's engine per transaction;
    `within(conn, changed)` runs in each transaction that writes a part, with the rows it inserted or changed.
    """
    refused: list[pl.DataFrame] = []
    pending = [frame] if frame.height else []
    while pending:
        part = pending.pop()
        try:
            _upsert_part(dialect, bind or dialect.engine, target, part, mapping, within)
        except Exception as exc:
            if not _is_row_level(exc):
                raise translate(
                    exc, what=f"upsert into {mapping.target_zone} table {target.name!r}", mapping=mapping.name
                ) from exc
            if part.height == 1:
                refused.append(_refusal(part, exc))
            else:
                middle = part.height // 2
                pending.extend((part.slice(middle), part.slice(0, middle)))
    landed = frame.get_column(ROW).to_frame()
    if not refused:
        return UpsertOutcome(landed, no_rejects())
    refused_frame = pl.concat(refused)
    landed = landed.join(refused_frame.select(ROW), on=ROW, how="anti")
    return UpsertOutcome(landed, refused_frame)


def _upsert_part(
    dialect: Dialect,
    bind: Engine | Connection,
    target: sa.Table,
    part: pl.DataFrame,
    mapping: SyncMapping,
    within: Callable[[Connection, int], None] | None,
) -> None:
    values = part.clone()  # shares the columns: dropping ROW from it leaves `part` whole
    values.drop_in_place(ROW)

    def write(conn: Connection) -> None:
        changed = dialect.upsert(conn, target, values, mapping.keys)
        revive(conn, target, values, mapping)  # a soft-deleted target row whose key is sent again lives again
        if within is not None:
            within(conn, changed)

    in_transaction(bind, write)


def _refusal(row: pl.DataFrame, exc: BaseException) -> pl.DataFrame:
    kind = "constraint" if row_error_kind(exc) == "IntegrityError" else "target_error"
    reason = getattr(exc, "reason", kind)
    return pl.DataFrame({ROW: row[ROW], "reason": [reason], "detail": [f"target {_why_refused(exc)}"]},
                        schema=REJECT_SCHEMA)  # fmt: skip


def _why_refused(exc: BaseException) -> str:
    """zonesync's words where they name the columns and the constraint, else the database's own message (values
    hidden)."""
    if names_the_refusal(exc):
        return refusal_words(refusal_reason(exc), refused_at(exc))
    return f"refused the row: {short_message(exc)}"
