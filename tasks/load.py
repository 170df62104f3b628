"""Write a batch to the target zone and flag it in the source zone.

A batch that the target refuses because of some of its rows (a constraint, a value the column cannot
hold) is split in halves until the offending rows are isolated: they are quarantined, the rest land.
Errors that concern the whole statement (missing column, permissions, connection) are not split.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from schemas.mapping import SyncMapping
from tasks.dialects import Dialect
from tasks.engines import in_transaction
from tasks.errors import RefusedValue, SyncError, is_lock_conflict, is_transient, short_message, translate
from tasks.transform import ROW
from tasks.validate import REJECT_SCHEMA, no_rejects

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
) -> UpsertOutcome:
    """Upsert `frame` (ROW + target columns); isolate and refuse the rows the target will not take.

    `bind`: a target connection the caller holds (the push), else one of the dialect's engine per transaction.
    """
    refused: list[pl.DataFrame] = []
    pending = [frame] if frame.height else []
    while pending:
        part = pending.pop()
        try:
            _retrying_lock_conflicts(
                functools.partial(_upsert_part, dialect, bind or dialect.engine, target, part, mapping)
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
    dialect: Dialect, bind: Engine | Connection, target: sa.Table, part: pl.DataFrame, mapping: SyncMapping
) -> None:
    values = part.clone()  # shares the columns: dropping ROW from it leaves `part` whole
    values.drop_in_place(ROW)
    in_transaction(bind, lambda conn: dialect.upsert(conn, target, values, mapping.keys))


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
    reason = "constraint" if _error_kind(exc) == "IntegrityError" else "target_error"
    return pl.DataFrame(
        {ROW: row[ROW], "reason": [reason], "detail": [f"target refused the row: {short_message(exc)}"]},
        schema=REJECT_SCHEMA,
    )


def flag_rows(
    dialect: Dialect,
    source: sa.Table,
    guard: pl.DataFrame,
    mapping: SyncMapping,
    dtypes: dict[str, pl.DataType],
    bind: Engine | Connection | None = None,
) -> int:
    """Set the flag of rows still equal (version or values) to what was read; return how many were flagged."""
    if guard.is_empty():
        return 0

    def flag() -> int:
        return in_transaction(
            bind or dialect.engine,
            lambda conn: dialect.flag(conn, source, mapping.flag_column, guard, mapping.source_keys, dtypes),
        )

    try:
        return _retrying_lock_conflicts(flag)
    except Exception as exc:
        raise translate(
            exc,
            what=f"flagging synced rows in {mapping.source_zone} table {source.name!r}",
            mapping=mapping.name,
        ) from exc


def guard_frame(raw: pl.DataFrame, landed: pl.DataFrame, mapping: SyncMapping) -> pl.DataFrame:
    """The raw key and guard values of the rows that landed, as read (the flag compares against these)."""
    columns: Sequence[str] = list(dict.fromkeys([*mapping.source_keys, *mapping.guard_columns]))
    if landed.height == raw.height:  # every row landed (landed rows are a subset of the batch's)
        return pl.DataFrame([raw.get_column(name) for name in columns])
    # A filter keeps the database's row order, which the flag statement's key range relies on.
    return raw.with_row_index(ROW).filter(pl.col(ROW).is_in(landed[ROW].implode())).select(columns)
