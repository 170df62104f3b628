"""The bookkeeping tables in the intranet zone (docs/architecture.md lists them).

Times are stored as naive UTC (`timestamp` / DATETIME(6)), the same on every backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.types import row_id, utc_wall_clock
from zonesync.tasks.results import JobStatus
from zonesync.tasks.zones.engines import dialect_for, in_transaction

_RESOLVE_CHUNK = 1000

metadata = sa.MetaData()
TIMESTAMP = utc_wall_clock()
ID_TYPE = row_id()

batch_job = sa.Table(
    "batch_job", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("job_name", sa.String(63), nullable=False),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("rows_eligible", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_synced", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_failed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("message", sa.Text),
    sa.Column("flow_run_id", sa.String(36)),
    sa.Index("ix_batch_job_job_name_business_date", "job_name", "business_date"),
)  # fmt: skip

sync_error = sa.Table(
    "sync_error", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("mapping", sa.String(63), nullable=False),
    sa.Column("direction", sa.String(32), nullable=False),
    sa.Column("record_key", sa.String(500), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("first_seen", TIMESTAMP, nullable=False),
    sa.Column("last_seen", TIMESTAMP, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("resolved_at", TIMESTAMP),
    sa.UniqueConstraint("mapping", "record_key", name="uq_sync_error_mapping_record_key"),
    sa.Index("ix_sync_error_open", "mapping", "resolved_at"),
)  # fmt: skip

# Update-with-rollback intents (tasks/update/intents.py): the before-image of an update in flight.
sync_intent = sa.Table(
    "sync_intent", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("mapping", sa.String(63), nullable=False),
    sa.Column("record_key", sa.String(500), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("transaction_id", sa.String(32), nullable=False),  # names its prepared transactions (2PC)
    sa.Column("before_image", sa.Text, nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("message", sa.Text),
    sa.Index("ix_sync_intent_open", "state"),
)  # fmt: skip

# Leases (tasks/bookkeeping/lease.py): who is working on a mapping right now, until when.
sync_lease = sa.Table(
    "sync_lease", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("expires_at", TIMESTAMP, nullable=False),
)  # fmt: skip


# The HTTP entry point's audit trail (audit.py): which client wrote which keys, when, with which outcome.
api_audit = sa.Table(
    "api_audit", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("at", TIMESTAMP, nullable=False),
    sa.Column("client", sa.String(63), nullable=False),
    sa.Column("mapping", sa.String(63), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),  # push, update
    sa.Column("status", sa.Integer, nullable=False),  # the HTTP status answered
    sa.Column("outcome", sa.String(32), nullable=False),  # success, pending, or the reason code
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("record_keys", sa.Text, nullable=False),  # JSON array of the keys (the first AUDITED_KEYS)
    sa.Index("ix_api_audit_at", "at"),
)  # fmt: skip

# The HTTP entry point's idempotency keys (tasks/bookkeeping/idempotency.py): the first answer to each client's key.
api_idempotency = sa.Table(
    "api_idempotency", metadata,
    sa.Column("client", sa.String(63), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),  # of the method, the mapping and the body
    sa.Column("created_at", TIMESTAMP, nullable=False),  # when the request was taken (or taken over)
    sa.Column("status", sa.Integer),  # the HTTP status answered; null while the request is served
    sa.Column("answer", sa.Text),  # the JSON answered (keys and reasons, never a record's values)
    sa.Index("ix_api_idempotency_created_at", "created_at"),
)  # fmt: skip

# The schema contract (tasks/schema/contract.py): the accepted shape of each mapping's live tables.
sync_schema = sa.Table(
    "sync_schema", metadata,
    sa.Column("mapping", sa.String(63), primary_key=True),
    sa.Column("fingerprint", sa.String(16), nullable=False),
    sa.Column("shape", sa.Text, nullable=False),  # canonical JSON of tasks/schema_shape.MappingShape
    sa.Column("accepted_at", TIMESTAMP, nullable=False),
    sa.Column("accepted_by", sa.String(100), nullable=False),
    sa.Column("note", sa.Text, nullable=False),  # what was accepted: the first shape seen, or the changes
    sa.Column("broken_at", TIMESTAMP),  # a run stopped on a breaking change, not mended or accepted since
)  # fmt: skip


def missing_table(exc: sa.exc.DBAPIError, table: sa.Table, mapping: str | None = None) -> ConfigError | None:
    """A one-line ConfigError when `exc` says the bookkeeping `table` does not exist ("no such table" comes as a
    ProgrammingError or an OperationalError, by driver), else None."""
    text = str(exc.orig).lower()
    if table.name in text and ("exist" in text or "no such table" in text):
        return ConfigError(f"the bookkeeping table {table.name} is missing: run `zonesync init`", mapping=mapping)
    return None


def utc_now() -> datetime:
    """Now, as the naive UTC the bookkeeping tables store."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_bookkeeping(engine: Engine) -> list[str]:
    """Create the bookkeeping tables that do not exist yet; return the names created."""
    existing = set(sa.inspect(engine).get_table_names())
    metadata.create_all(engine, checkfirst=True)
    return [name for name in metadata.tables if name not in existing]


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


def last_finished(engine: Engine, job_name: str) -> datetime | None:
    """When the latest finished run of a job ended (UTC), or None."""
    query = sa.select(sa.func.max(batch_job.c.finished_at)).where(batch_job.c.job_name == job_name)
    with engine.connect() as conn:
        last = conn.execute(query).scalar_one()
    return last.replace(tzinfo=UTC) if last is not None else None


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


@dataclass
class JobCounts:
    """What a batch job did, for its `batch_job` row."""

    eligible: int = 0
    synced: int = 0
    failed: int = 0


def count_batch(conn: Connection, job_id: int, counts: JobCounts) -> None:
    """Add one batch's counts to its job's row (in the transaction that commits the batch, where possible)."""
    conn.execute(
        sa.update(batch_job)
        .where(batch_job.c.id == job_id)
        .values(
            rows_eligible=batch_job.c.rows_eligible + counts.eligible,
            rows_synced=batch_job.c.rows_synced + counts.synced,
            rows_failed=batch_job.c.rows_failed + counts.failed,
        )
    )


def finish_job(bind: Engine | Connection, job_id: int, status: JobStatus, message: str) -> JobCounts:
    """Write a batch job's final status (its counts were added batch by batch); return its counts."""

    def finish(conn: Connection) -> JobCounts:
        conn.execute(
            sa.update(batch_job)
            .where(batch_job.c.id == job_id, batch_job.c.status == "RUNNING")
            .values(status=status, finished_at=utc_now(), message=message[:4000])
        )
        row = conn.execute(
            sa.select(batch_job.c.rows_eligible, batch_job.c.rows_synced, batch_job.c.rows_failed).where(
                batch_job.c.id == job_id
            )
        ).one()
        return JobCounts(*row)

    return in_transaction(bind, finish)  # or in the caller's, on its connection


def running_jobs(engine: Engine) -> list[int]:
    """The ids of batch_job rows still RUNNING (live runs, or runs that were killed)."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(batch_job.c.id).where(batch_job.c.status == "RUNNING")).scalars())


def recent_jobs(engine: Engine, limit: int = 10) -> list[dict[str, Any]]:
    """The latest batch_job rows, newest first."""
    query = sa.select(batch_job).order_by(batch_job.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def jobs_for(engine: Engine, job_name: str, business_date: date) -> list[dict[str, Any]]:
    """Every batch_job row of one job for one business date, oldest first."""
    query = (
        sa.select(batch_job)
        .where(batch_job.c.job_name == job_name, batch_job.c.business_date == business_date)
        .order_by(batch_job.c.id)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


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


# What the flows and the command line use (the api_* tables are the HTTP API's; on MariaDB a role sees only the
# tables it holds a privilege on, so each checks for its own).
FLOW_TABLES = ("batch_job", "sync_error", "sync_intent", "sync_lease", "sync_schema")


def missing_tables(engine: Engine, names: Iterable[str] = FLOW_TABLES) -> list[str]:
    """Which of these bookkeeping tables `zonesync init` has not created yet."""
    existing = set(sa.inspect(engine).get_table_names())
    return [name for name in names if name not in existing]
