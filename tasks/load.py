"""Write a batch to the target zone (its rows already claimed in the source: tasks/batch.py).

A batch that the target refuses because of some of its rows (a constraint, a value the column cannot
hold) is split in halves until the offending rows are isolated: they are quarantined, the rest land.
Errors that concern the whole statement (missing column, permissions, connection) are not split.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import RefusedValue, SyncError, is_lock_conflict, is_transient, short_message, translate
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.dialects import Dialect
from zonesync.tasks.engines import in_transaction
from zonesync.tasks.transform import ROW
from zonesync.tasks.validate import REJECT_SCHEMA, no_rejects

T = TypeVar("T")
# PEP 249 names: SQLAlchemy's wrappers and every driver's own exceptions (raised by COPY / LOAD DATA) use them.
_ROW_LEVEL_ERROR_NAMES = ("IntegrityError", "DataError")


# MariaDB (4025) and MySQL (3819) report a failed CHECK constraint as an OperationalError.
_CHECK_VIOLATION_CODES = {4025, 3819}


def _error_kind(exc: BaseException) -> str | None:
    """'IntegrityError' or 'DataError' when the error (or the driver error it wraps) is one of those."""
    for error in (exc, getattr(exc, "orig", None)):
        code = getattr(error, "args", (None,))[:1]
        if code and code[0] in _CHECK_VIOLATION_CODES:
            return "IntegrityError"
        for cls in type(error).__mro__ if error is not None else ():
            if cls.__name__ in _ROW_LEVEL_ERROR_NAMES:
                return cls.__name__
    return None


@dataclass(frozen=True)
class UpsertOutcome:
    """Which rows landed in the target (by ROW) and which were refused, with the database's reason."""

    landed: pl.DataFrame
    refused: pl.DataFrame


def _is_row_level(exc: BaseException) -> bool:
    """Errors that some rows cause and others would not (so splitting the batch helps)."""
    if isinstance(exc, SyncError):
        return isinstance(exc, RefusedValue)
    return _error_kind(exc) is not None and not is_transient(exc)


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
            _retrying_lock_conflicts(
                functools.partial(_upsert_part, dialect, bind or dialect.engine, target, part, mapping, within)
            )
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
        if within is not None:
            within(conn, changed)

    in_transaction(bind, write)


_LOCK_CONFLICT_RETRIES = 4


def _retrying_lock_conflicts(write: Callable[[], T]) -> T:
    """Run a write transaction again when the database chose it as a deadlock victim (or it waited too long
    for a lock): it was rolled back whole, and concurrent writers of neighbouring keys make this normal."""
    for attempt in range(_LOCK_CONFLICT_RETRIES):
        try:
            return write()
        except Exception as exc:
            if attempt == _LOCK_CONFLICT_RETRIES - 1 or not is_lock_conflict(exc):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def _refusal(row: pl.DataFrame, exc: BaseException) -> pl.DataFrame:
    kind = "constraint" if _error_kind(exc) == "IntegrityError" else "target_error"
    reason = getattr(exc, "reason", kind)
    return pl.DataFrame(
        {ROW: row[ROW], "reason": [reason], "detail": [f"target refused the row: {short_message(exc)}"]},
        schema=REJECT_SCHEMA,
    )
