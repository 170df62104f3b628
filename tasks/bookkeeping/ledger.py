"""The batch job ledger: every scheduled run leaves one `batch_job` row that tells the truth, whatever happens.

- Counts are added batch by batch, in the transaction that commits the batch's flags when the intranet zone
  is its source (a retry sync): a row is counted exactly when it is flagged, by the run that flagged it, also
  when the run is killed a moment later or retried by Prefect.
- The row is RUNNING only while its run lives: the run holds a lease named after the row (taken in the same
  transaction that inserts it, renewed by a keeper thread). The next run — of any job — and `zonesync recover`
  close the RUNNING rows whose lease has expired or whose process died on this machine: ABORTED, with the
  counts the run had committed.
- A run whose mappings were all skipped (another run holds them) says SKIPPED, not NO_RECORD.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from prefect import get_run_logger, runtime
from prefect.logging import get_logger
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.settings import get_settings
from zonesync.tasks.bookkeeping.jobs import BatchRecord, JobCounts, count_batch, finish_job, running_jobs
from zonesync.tasks.bookkeeping.lease import Lease, kept_alive
from zonesync.tasks.bookkeeping.tables import batch_job, utc_now
from zonesync.tasks.results import JobStatus, MappingSyncResult, job_status
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.engines import in_transaction
from zonesync.tasks.zones.failures import translate

ABANDONED = "aborted: the run stopped before it finished (killed, or its machine lost); counts are what it committed"
logger = get_logger("zonesync.ledger")


@dataclass
class JobEntry:
    """The outcome a run will write to its `batch_job` row when it ends."""

    id: int
    status: JobStatus = "NO_RECORD"  # until a mapping has been synced: a run over no mappings found nothing
    counts: JobCounts = field(default_factory=JobCounts)  # as written, once the run has ended
    message: str = ""

    def settle(self, results: Sequence[MappingSyncResult], problems: Sequence[str] = ()) -> None:
        """Status and message from the per-mapping results; problems found besides make a clean run PARTIAL."""
        self.status = job_status(results)
        if problems and self.status in ("SUCCESS", "NO_RECORD"):
            self.status = "PARTIAL"
        self.message = "; ".join([f"{r.mapping}: {why}" for r in results if (why := _left_over(r))] + list(problems))


def _left_over(result: MappingSyncResult) -> str:
    """What a mapping's run leaves to look at, in a few words ('' when nothing): why a run is not clean."""
    said = [result.message] if result.message else []
    if result.quarantined:
        said.append(f"{result.quarantined} row(s) quarantined (zonesync status; sync_error)")
    return "; ".join(said)


def batch_recorder(job_id: int) -> BatchRecord:
    """What each batch of a run adds to its batch_job row, inside the transaction that commits the batch."""

    def record(conn: Connection, read: int, synced: int, failed: int) -> None:
        count_batch(conn, job_id, JobCounts(read, synced, failed))

    return record


@contextmanager
def job_ledger(intranet: Engine, job_name: str, business_date: date) -> Iterator[JobEntry]:
    """A RUNNING row for the block, kept alive by its lease; its final status is written on the way out, also
    when the run fails. Rows of runs that died are closed first."""
    for line in close_abandoned(intranet):
        get_run_logger().warning("%s", line)
    try:
        entry, lease = start_job(intranet, job_name, business_date)
    except Exception as exc:
        raise translate(exc, what="writing the batch_job row in the intranet zone") from exc
    try:
        with kept_alive(lease):
            yield entry
    except BaseException as exc:
        entry.status = "FAILED"
        entry.message = "; ".join(part for part in (entry.message, f"run aborted: {exc}") if part)
        try:
            _finish(intranet, entry, lease)
        except SyncError as lost:  # the run's own failure is the one to raise; the lost status is logged
            get_run_logger().error("%s", lost)
        raise
    _finish(intranet, entry, lease)


def close_abandoned(intranet: Engine) -> list[str]:
    """Close (ABORTED) the RUNNING batch_job rows whose run is gone: its lease expired or its process died here."""
    closed = []
    for job_id in running_jobs(intranet):
        lease = Lease(intranet, job_lease(job_id), job_lease_seconds())
        if not lease.try_acquire():
            continue  # its run is alive
        try:
            counts = _closed(intranet, job_id, "ABORTED", ABANDONED, lease)
        except BaseException:
            _release(lease)  # the row stays RUNNING for the next run to close
            raise
        closed.append(f"batch_job {job_id} was left RUNNING by a run that stopped: closed as ABORTED "
                      f"({counts.synced} rows synced, {counts.failed} quarantined)")  # fmt: skip
    return closed


def job_lease_seconds() -> float:
    """How long after its process dies elsewhere a RUNNING row stays RUNNING: ZONESYNC_LEASE_SECONDS, as the
    mapping leases the run holds (a worker's job and its partitions are taken over alike)."""
    return get_settings().lease_seconds


def job_lease(job_id: int) -> str:
    """The lease a run holds while its batch_job row is RUNNING."""
    return f"batch-job:{job_id}"


def start_job(intranet: Engine, job_name: str, business_date: date) -> tuple[JobEntry, Lease]:
    """Insert the RUNNING row and take its lease in one transaction (no one can think it abandoned meanwhile)."""

    def start(conn: Connection) -> tuple[JobEntry, Lease]:
        result = conn.execute(
            sa.insert(batch_job).values(
                job_name=job_name, business_date=business_date, status="RUNNING",
                started_at=utc_now(), flow_run_id=str(runtime.flow_run.id or ""),
            )
        )  # fmt: skip
        assert result.inserted_primary_key is not None
        job_id = int(result.inserted_primary_key[0])
        lease = Lease(intranet, job_lease(job_id), job_lease_seconds())
        lease.acquire_in(conn)
        return JobEntry(job_id), lease

    return in_transaction(intranet, start)


def _finish(intranet: Engine, entry: JobEntry, lease: Lease) -> None:
    """Write the run's final status; when that fails, give the lease up anyway (or it expires by itself)."""
    try:
        entry.counts = _closed(intranet, entry.id, entry.status, entry.message, lease)
    except Exception as exc:
        _release(lease)
        raise translate(exc, what=f"writing the final status {entry.status} of batch_job {entry.id}") from exc


def _closed(intranet: Engine, job_id: int, status: JobStatus, message: str, lease: Lease) -> JobCounts:
    """The final status and the release of the row's lease, in one transaction: a process killed at any moment
    leaves either a RUNNING row with its lease (closed by the next run) or a finished row without one."""

    def close(conn: Connection) -> JobCounts:
        counts = finish_job(conn, job_id, status, message)
        checkpoint("ledger:closing")
        lease.release_in(conn)
        return counts

    return in_transaction(intranet, close)


def _release(lease: Lease) -> None:
    try:
        lease.release()
    except Exception as exc:  # it expires by itself; the next run sees the row RUNNING and closes it
        logger.warning("could not release %s: %s", lease.name, translate(exc, what="releasing the lease"))
