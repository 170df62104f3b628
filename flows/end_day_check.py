"""End-day sync check: bring the day's successful internet transactions back, and reconcile.

Cron summary batch job → retrieve eligible internet rows (flag false, e.g. status = 'S') → none: log "no
record" → upsert into the intranet table, logging and quarantining failed rows while the rest go on → flag
the synced rows in the internet zone → write the job's status to `batch_job` whatever happened before →
publish the summary report (with the reconciliation of the business date in both zones).
"""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger
from prefect.states import State

from zonesync.flows.outcomes import flow_with_outcome, job_state
from zonesync.schemas.errors import SyncError, TerminalSyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.settings import get_settings
from zonesync.tasks.bookkeeping.lease import holding
from zonesync.tasks.bookkeeping.ledger import JobEntry, job_ledger
from zonesync.tasks.prefect_tasks import (
    check_run_settings,
    failure_message,
    outcome,
    prepare_intranet,
    reconcile,
    sync_mapping,
)
from zonesync.tasks.reporting.end_day import JOB_NAME, previous_business_date, publish_end_day
from zonesync.tasks.reporting.events import emit_end_day_failed, emit_refusals
from zonesync.tasks.results import EndDayReport

JOB_LEASE = f"job:{JOB_NAME}"  # one end-day check at a time, however it was started
JOB_LEASE_SECONDS = 300  # kept alive while the run lives; a crashed run elsewhere blocks the next one this long


class EndDayFailed(TerminalSyncError):
    """The end-day check could not do its work; its batch_job row (when writable) and its report say why."""

    def __init__(self, report: EndDayReport) -> None:
        super().__init__(f"end-day check {report.business_date} failed: {report.message}")
        self.report = report


def checked(report: EndDayReport) -> State:
    """The state its batch_job status names: Completed, "NoRecord", "Partial" (a FAILED check raises)."""
    return job_state(report, report.status, report.message or report.status)


@flow_with_outcome(
    checked, name="end-day-check",
    description="End-day sync check: bring successful internet rows back and reconcile.",
)  # fmt: skip
def end_day_check(business_date: date | None = None, mappings: list[str] | None = None) -> EndDayReport:
    """Sync every (or the named) internet_to_intranet mapping, reconcile the business date, report.

    Args:
        business_date: the day to check, e.g. 2026-11-25; none (the default) takes the day that most recently
            ended in ZONESYNC_BUSINESS_TIMEZONE.
        mappings: the mappings to check; none (the default) checks every internet_to_intranet mapping.
    """
    selected = check_run_settings("internet_to_intranet", mappings)
    report = EndDayReport(business_date or previous_business_date(get_settings().business_timezone))
    intranet = prepare_intranet()
    job: JobEntry | None = None
    failure: SyncError | None = None
    try:
        with job_ledger(intranet, JOB_NAME, report.business_date) as job:
            report.job_id = job.id
            with holding(intranet, JOB_LEASE, ttl=JOB_LEASE_SECONDS, keep_alive=True):
                _check(selected, report, job)
    except SyncError as exc:  # refused (overlap) or a zone lost: the ledger row says FAILED, when writable
        failure = exc
    finally:
        report.status, report.message = (job.status, job.message) if job else ("FAILED", str(failure or ""))
        publish_end_day(report, intranet)
    if report.status == "FAILED":
        emit_end_day_failed(report.business_date.isoformat(), report.job_id, report.message)
        raise EndDayFailed(report) from failure
    return report


def _check(selected: list[SyncMapping], report: EndDayReport, job: JobEntry) -> None:
    """Sync, then reconcile, each mapping; the ledger entry follows along."""
    size = get_settings().batch_size
    for mapping in selected:
        result = outcome(sync_mapping(mapping.name, size, JOB_NAME, job.id, return_state=True), mapping.name)
        if result.status == "no_record":
            get_run_logger().info("%s: no record (no eligible unsynced rows)", mapping.name)
        report.mappings.append(result)
        job.settle(report.mappings)
        emit_refusals(result, JOB_NAME, job.id)
        state = reconcile(mapping.name, report.business_date, return_state=True)
        if state.is_completed():
            report.reconciliations.append(state.result())
        else:
            report.reconcile_errors[mapping.name] = failure_message(state)
    job.settle(report.mappings, problems=report.problems())
