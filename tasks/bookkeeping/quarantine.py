"""The quarantine (`sync_error`): refused rows recorded with their reasons, counted, listed, resolved.

A record that later syncs is resolved, never deleted; only the scheduled runs reopen a resolved record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.tables import sync_error, utc_now
from zonesync.tasks.schema.catalog import source_table
from zonesync.tasks.sync.transform import ROW
from zonesync.tasks.zones.engines import dialect_for, in_transaction
from zonesync.tasks.zones.failures import translate

_RESOLVE_CHUNK = 1000
SWEPT_PER_RUN = 10_000  # open entries a scheduled run checks against the source (the oldest first)


def record_keys(frame: pl.DataFrame, keys: Sequence[str]) -> pl.Series:
    """Canonical JSON of each row's key columns (the `record_key` of sync_error)."""
    return frame.select(pl.struct(list(keys)).struct.json_encode().alias("record_key")).to_series()


# The columns a quarantine that does not reopen inserts (MariaDB checks UPDATE of each of them in its
# INSERT ... ON DUPLICATE KEY UPDATE; the grants of the HTTP API's role follow this list).
QUARANTINE_INSERTS = ("mapping", "direction", "record_key", "reason", "detail", "first_seen", "last_seen", "attempts")


def quarantine(bind: Engine | Connection, mapping: SyncMapping, rejected: pl.DataFrame, *, reopen: bool = False) -> int:
    """Record rejected rows (record_key, reason, detail); a record seen before gets attempts + 1, and with
    `reopen` (the scheduled runs) its entry opens again if it had been resolved."""
    if rejected.is_empty():
        return 0
    now = utc_now()
    reopened = {"resolved_at": None} if reopen else {}  # not even inserted otherwise (see QUARANTINE_INSERTS)
    rows = [
        {"mapping": mapping.name, "direction": mapping.direction, "record_key": key, "reason": reason,
         "detail": detail, "first_seen": now, "last_seen": now, "attempts": 1, **reopened}
        for key, reason, detail in rejected.select("record_key", "reason", "detail").unique("record_key").iter_rows()
    ]  # fmt: skip
    statement = dialect_for(bind.engine).insert_or_update(
        sync_error,
        keys=("mapping", "record_key"),
        replace=("reason", "detail", "last_seen", *reopened),
        extra={"attempts": sync_error.c.attempts + sa.literal_column("1")},  # no bind: PyMySQL batches
    )
    in_transaction(bind, lambda conn: conn.execute(statement, rows))  # or in the caller's, on its connection
    return len(rows)


def count_open_errors(engine: Engine, mapping: str | None = None) -> int:
    """Quarantined records not resolved yet (of one mapping, or all)."""
    query = sa.select(sa.func.count()).select_from(sync_error).where(sync_error.c.resolved_at.is_(None))
    if mapping is not None:
        query = query.where(sync_error.c.mapping == mapping)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def oldest_open_error(engine: Engine, mapping: str) -> datetime | None:
    """When the longest-waiting open quarantined record of a mapping was first refused (UTC), or None."""
    query = sa.select(sa.func.min(sync_error.c.first_seen)).where(
        sync_error.c.mapping == mapping, sync_error.c.resolved_at.is_(None)
    )
    with engine.connect() as conn:
        first = conn.execute(query).scalar_one()
    return first.replace(tzinfo=UTC) if first is not None else None


def resolve(bind: Engine | Connection, mapping: str, keys: Sequence[str]) -> int:
    """Mark the open errors of these record keys resolved (they have synced since)."""
    now = utc_now()

    def resolve_chunks(conn: Connection) -> int:
        resolved = 0
        for start in range(0, len(keys), _RESOLVE_CHUNK):
            chunk = list(keys[start : start + _RESOLVE_CHUNK])
            result = conn.execute(
                sa.update(sync_error)
                .where(sync_error.c.mapping == mapping, sync_error.c.resolved_at.is_(None))
                .where(sync_error.c.record_key.in_(chunk))
                .values(resolved_at=now)
            )
            resolved += int(result.rowcount)
        return resolved

    return in_transaction(bind, resolve_chunks)  # or in the caller's, on its connection


def open_errors(engine: Engine, mappings: Sequence[str], limit: int = 20) -> list[dict[str, Any]]:
    """The most recently seen unresolved quarantine rows of some mappings."""
    query = (
        sa.select(sync_error)
        .where(sync_error.c.mapping.in_(list(mappings)), sync_error.c.resolved_at.is_(None))
        .order_by(sync_error.c.last_seen.desc(), sync_error.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def source_record_keys(raw: pl.DataFrame, mapping: SyncMapping) -> pl.Series:
    """Record keys (sync_error.record_key) named by target key columns, valued as read from the source."""
    renamed = raw.select(pl.col(c.source).alias(c.name) for c in mapping.key_columns)
    return record_keys(renamed, mapping.keys)


def quarantine_rows(
    bind: Engine | Connection, raw: pl.DataFrame, refused: pl.DataFrame, mapping: SyncMapping, *, reopen: bool = False
) -> int:
    """Record the refused rows of a batch in sync_error (one row per record, reasons joined; `reopen`: see
    `bookkeeping.quarantine`)."""
    if refused.is_empty():
        return 0
    rows = raw.with_row_index(ROW).join(refused, on=ROW, how="inner")
    rows = rows.with_columns(source_record_keys(rows, mapping))
    merged = rows.group_by("record_key", maintain_order=True).agg(
        pl.col("reason").first(), pl.col("detail").str.join("; ")
    )
    try:
        return quarantine(bind, mapping, merged, reopen=reopen)
    except Exception as exc:
        raise translate(exc, what="recording quarantined rows in sync_error", mapping=mapping.name) from exc


def resolve_synced(intranet: Engine, mapping: SyncMapping, source: Engine) -> int:
    """Resolve the open entries whose source row is flagged synced now: a row that landed some other way (an
    update, a push, a fix by hand) than the runs that resolve what they carry. How many."""
    query = (sa.select(sync_error.c.record_key).where(sync_error.c.mapping == mapping.name,
             sync_error.c.resolved_at.is_(None)).order_by(sync_error.c.id).limit(SWEPT_PER_RUN))  # fmt: skip
    with intranet.connect() as conn:
        open_keys = [json.loads(key) for (key,) in conn.execute(query)]
    if not open_keys:
        return 0
    table = source_table(mapping, source)
    columns = [table.c[column.source] for column in mapping.key_columns]
    wanted = [tuple(key.get(name) for name in mapping.keys) for key in open_keys if isinstance(key, dict)]
    flagged = sa.not_(dialect_for(source).not_synced(table.c[mapping.flag_column]))
    synced: list[tuple[Any, ...]] = []
    with source.connect() as conn:
        for start in range(0, len(wanted), _RESOLVE_CHUNK):
            chunk = wanted[start : start + _RESOLVE_CHUNK]
            chosen = columns[0].in_([k[0] for k in chunk]) if len(columns) == 1 else sa.tuple_(*columns).in_(chunk)
            synced += [tuple(row) for row in conn.execute(sa.select(*columns).where(chosen, flagged))]
    if not synced:
        return 0
    schema = {column.source: column.dtype for column in mapping.key_columns}
    return resolve(intranet, mapping.name, source_record_keys(pl.DataFrame(synced, schema=schema, orient="row"),
                                                              mapping).to_list())  # fmt: skip
