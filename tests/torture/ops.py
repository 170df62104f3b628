"""What a worker process can be told to do: zonesync's public entry points, an application writer, a row lock.

Every operation takes JSON-friendly arguments and returns a JSON-friendly answer. The string "@now" in a value
becomes the current UTC time (microseconds) when the operation runs: the version column of a write is bumped
at the moment it is written, as an application would.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import sqlalchemy as sa

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.registry import get_mapping
from zonesync.tasks.zones.engines import dialect_for, get_engine

NOW = "@now"
Emit = Callable[[dict[str, Any]], None]


def stamp(value: Any) -> Any:
    """A value with "@now" replaced by the current UTC time in ISO form."""
    return datetime.now(UTC).isoformat() if value == NOW else value


def stamped(values: dict[str, Any]) -> dict[str, Any]:
    """Record values with every "@now" resolved."""
    return {name: stamp(value) for name, value in values.items()}


def retry(mappings: list[str], batch_size: int, **_: Any) -> dict[str, Any]:
    """One cron retry sync run; per mapping its status, counts and message."""
    from zonesync.flows.retry_sync import retry_sync

    report = retry_sync(mappings=mappings, batch_size=batch_size)
    return {r.mapping: {"status": r.status, "flagged": r.flagged, "message": r.message[:300]} for r in report.mappings}


def endday(business_date: str, mappings: list[str], **_: Any) -> dict[str, Any]:
    """One end-day check; its status (FAILED runs raise EndDayFailed, which is an answer here)."""
    from zonesync.flows.end_day_check import EndDayFailed, end_day_check

    try:
        report = end_day_check(business_date=date.fromisoformat(business_date), mappings=mappings)
    except EndDayFailed as failed:
        report = failed.report
    return {"status": report.status, "message": report.message[:300]}


def push(mapping: str, batches: list[list[dict[str, Any]]], pause: float = 0.0, **_: Any) -> list[str]:
    """Real-time pushes, one per batch of records; the status of each."""
    from zonesync.tasks.push.pusher import push_records

    answers = []
    for records in batches:
        result = push_records(mapping, [stamped(record) for record in records])
        answers.append(f"{result.status}:{result.reason}" if result.reason else result.status)
        time.sleep(pause)
    return answers


def update(mapping: str, items: list[dict[str, Any]], pause: float = 0.0, **_: Any) -> list[str]:
    """Updates with rollback, one per {key, changes}; the status (and reason) of each."""
    from zonesync.tasks.update.rollback import update_record

    answers = []
    for item in items:
        result = update_record(get_mapping(mapping), item["key"], stamped(item["changes"]))
        answers.append(f"{result.status}:{result.reason}" if result.reason else result.status)
        time.sleep(pause)
    return answers


def delete(mapping: str, keys: list[dict[str, Any]], pause: float = 0.0, **_: Any) -> list[str]:
    """Deletes with rollback, one per key; the status (and reason) of each."""
    from zonesync.tasks.update.deletion import delete_record

    answers = []
    for key in keys:
        result = delete_record(get_mapping(mapping), key)
        answers.append(f"{result.status}:{result.reason}" if result.reason else result.status)
        time.sleep(pause)
    return answers


def app(mapping: str, items: list[dict[str, Any]], pause: float = 0.0, **_: Any) -> int:
    """The application writer: per {key, values}, ONE statement setting the new values, flag false, version bumped."""
    found = get_mapping(mapping)
    engine = get_engine(found.source_zone)
    table = sa.Table(found.source_table, sa.MetaData(), autoload_with=engine)
    changed = 0
    for item in items:
        values = _encoded(engine, found, stamped(item["values"]))
        where = [table.c[name] == value for name, value in item["key"].items()]
        with engine.begin() as conn:
            changed += conn.execute(sa.update(table).where(*where).values(values)).rowcount
        time.sleep(pause)
    return changed


def _encoded(engine: sa.Engine, mapping: SyncMapping, values: dict[str, Any]) -> dict[str, Any]:
    """Values typed by the mapping's columns and encoded the way the dialect stores them, plus flag false."""
    dtypes = {column.source: column.dtype for column in mapping.columns}
    typed = {name: [_typed(value, dtypes[name])] for name, value in values.items()}
    frame = pl.DataFrame(typed, schema={name: dtypes[name] for name in values})
    row = dialect_for(engine).encode(frame).row(0, named=True)
    return row | {mapping.flag_column: False}


def _typed(value: Any, dtype: pl.DataType) -> Any:
    if isinstance(dtype, pl.Decimal):
        return Decimal(str(value))
    if isinstance(dtype, pl.Datetime):
        return datetime.fromisoformat(value)
    return value


def recover(**_: Any) -> list[str]:
    """`zonesync recover`: repair interrupted updates."""
    from zonesync.tasks.update.recovery import recover_intents

    return recover_intents(get_engine("intranet"))


def lock(zone: str, table: str, key: dict[str, Any], hold: float, emit: Emit, **_: Any) -> str:
    """Hold a lock on one row (SELECT ... FOR UPDATE; on SQLite the whole file) for `hold` seconds."""
    engine = get_engine(zone)  # type: ignore[arg-type]
    if engine.dialect.name == "sqlite":
        return _lock_sqlite(str(engine.url.database), hold, emit)
    reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
    query = sa.select(reflected).where(*(reflected.c[n] == v for n, v in key.items())).with_for_update()
    with engine.connect() as conn, conn.begin() as transaction:
        found = len(conn.execute(query).all())
        emit({"event": "locked", "rows": found})
        time.sleep(hold)
        transaction.rollback()
    return f"held {found} row(s) for {hold:.1f} s"


def _lock_sqlite(path: str, hold: float, emit: Emit) -> str:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")  # SQLite locks the database, not a row: the closest it has
        emit({"event": "locked", "rows": -1})
        time.sleep(hold)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return f"held the SQLite write lock for {hold:.1f} s"


def steps(steps: list[dict[str, Any]], emit: Emit, **_: Any) -> list[Any]:
    """Several operations one after another; a step that raises is answered by its error and the next runs."""
    answers: list[Any] = []
    for step in steps:
        try:
            answers.append(OPERATIONS[step["op"]](emit=emit, **step.get("args", {})))
        except Exception as exc:  # a failed step is an answer: the drill goes on
            answers.append(f"error: {type(exc).__name__}: {exc}"[:300])
    return answers


OPERATIONS: dict[str, Callable[..., Any]] = {
    "steps": steps,
    "retry": retry,
    "endday": endday,
    "push": push,
    "update": update,
    "delete": delete,
    "app": app,
    "recover": recover,
    "lock": lock,
}
