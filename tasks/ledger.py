"""The batch job ledger: every scheduled run leaves one `batch_job` row with its final status, whatever happens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from prefect import get_run_logger, runtime
from sqlalchemy.engine import Engine

from tasks import bookkeeping
from tasks.bookkeeping import JobCounts, JobStatus
from tasks.errors import SyncError, translate
from tasks.sync import MappingSyncResult


@dataclass
class JobEntry:
    """The outcome a run will write to its `batch_job` row when it ends."""

    id: int
    status: JobStatus = "NO_RECORD"  # until a mapping has been synced: a run over no mappings found nothing
    counts: JobCounts = field(default_factory=JobCounts)
    message: str = ""

    def settle(self, results: Sequence[MappingSyncResult], problems: Sequence[str] = ()) -> None:
        """Status, counts and message from the per-mapping results; problems found besides make a clean run PARTIAL."""
        self.status = job_status(results)
        if problems and self.status in ("SUCCESS", "NO_RECORD"):
            self.status = "PARTIAL"
        self.counts = JobCounts(
            eligible=sum(r.read for r in results),
            synced=sum(r.flagged for r in results),
            failed=sum(r.quarantined for r in results),
        )
        self.message = "; ".join([f"{r.mapping}: {r.message}" for r in results if r.message] + list(problems))


def job_status(results: Sequence[MappingSyncResult]) -> JobStatus:
    """The batch_job status that a run with these per-mapping results earns."""
    statuses = {result.status for result in results}
    if "error" in statuses:
        return "PARTIAL" if sum(result.flagged for result in results) else "FAILED"
    if statuses <= {"no_record", "skipped"}:
        return "NO_RECORD"
    return "PARTIAL" if "partial" in statuses else "SUCCESS"


@contextmanager
def job_ledger(intranet: Engine, job_name: str, business_date: date) -> Iterator[JobEntry]:
    """A RUNNING row for the block; its final status is written on the way out, also when the run fails."""
    try:
        job_id = bookkeeping.start_job(intranet, job_name, business_date, str(runtime.flow_run.id or ""))
    except Exception as exc:
        raise translate(exc, what="writing the batch_job row in the intranet zone") from exc
    entry = JobEntry(job_id)
    try:
        yield entry
    except BaseException as exc:
        entry.status = "FAILED"
        entry.message = "; ".join(part for part in (entry.message, f"run aborted: {exc}") if part)
        try:
            _finish(intranet, entry)
        except SyncError as lost:  # the run's own failure is the one to raise; the lost status is logged
            get_run_logger().error("%s", lost)
        raise
    _finish(intranet, entry)


def _finish(intranet: Engine, entry: JobEntry) -> None:
    try:
        bookkeeping.finish_job(intranet, entry.id, entry.status, entry.counts, entry.message)
    except Exception as exc:
        raise translate(exc, what=f"writing the final status {entry.status} of batch_job {entry.id}") from exc
