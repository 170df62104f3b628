"""The `batch_job` rows: one per scheduled run, counted batch by batch, finished with the run's status, listed.

The ledger (`ledger.py`) decides when a row is started and finished; this module only reads and writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.tasks.bookkeeping.tables import batch_job, utc_now
from zonesync.tasks.results import JobStatus
from zonesync.tasks.zones.engines import in_transaction

# The scheduled jobs' names in `batch_job.job_name` (also their flows' artifact keys): here, where `zonesync status`
# reads them without loading the flows (and Prefect with them).
RETRY_SYNC_JOB = "retry-sync"
END_DAY_JOB = "end-day-check"
# Run inside the transaction that commits a batch's flags when the intranet zone is its source (a batch_job
# count commits with the rows it counts): (connection, rows read, rows flagged, rows quarantined).
BatchRecord = Callable[[Connection, int, int, int], None]


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


def last_finished(engine: Engine, job_name: str) -> datetime | None:
    """When the latest finished run of a job ended (UTC), or None."""
    query = sa.select(sa.func.max(batch_job.c.finished_at)).where(batch_job.c.job_name == job_name)
    with engine.connect() as conn:
        last = conn.execute(query).scalar_one()
    return last.replace(tzinfo=UTC) if last is not None else None
