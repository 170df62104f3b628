"""Cron retry sync: carry every unsynced intranet row to the internet zone.

Query source rows where is_sync = false → transform & validate for the target schema → push (upsert) →
patch is_sync = true. Bad rows are quarantined in `sync_error` and the rest go on; a failed query or push
ends that mapping's run with an error status while the other mappings still run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.states import State

from zonesync.flows.outcomes import flow_with_outcome, job_state
from zonesync.schemas.settings import BatchSize, get_settings
from zonesync.tasks.bookkeeping.jobs import RETRY_SYNC_JOB
from zonesync.tasks.bookkeeping.ledger import job_ledger
from zonesync.tasks.prefect_tasks import check_run_settings, outcome, prepare_intranet, sync_mapping
from zonesync.tasks.reporting.events import emit_refusals
from zonesync.tasks.reporting.sync_run import publish_summary
from zonesync.tasks.results import SyncReport

FLOW_KEY = RETRY_SYNC_JOB


def synced(report: SyncReport) -> State:
    """The state its batch_job status names: Completed, "NoRecord", "Partial", "Skipped", or Failed."""
    return job_state(report, report.job_status(), report.headline())


@flow_with_outcome(
    synced, name="retry-sync", description="Cron retry sync: push unsynced intranet rows to the internet zone."
)
def retry_sync(mappings: list[str] | None = None, batch_size: BatchSize | None = None) -> SyncReport:
    """Sync every (or the named) intranet_to_internet mapping; returns per-mapping counts.

    Args:
        mappings: the mappings to sync; none (the default) syncs every intranet_to_internet mapping.
        batch_size: rows per batch; none (the default) takes ZONESYNC_BATCH_SIZE.
    """
    selected = check_run_settings("intranet_to_internet", mappings)
    size = batch_size or get_settings().batch_size
    intranet = prepare_intranet()
    report = SyncReport()
    with job_ledger(intranet, FLOW_KEY, datetime.now(UTC).date()) as job:
        for mapping in selected:
            state = sync_mapping(mapping.name, size, FLOW_KEY, job.id, return_state=True)
            report.mappings.append(outcome(state, mapping.name))
            job.settle(report.mappings)  # after each mapping, so an aborted run still records what it did
            emit_refusals(report.mappings[-1], FLOW_KEY, job.id)
    publish_summary(FLOW_KEY, "Retry sync", report.mappings, intranet, status=report.job_status(), job_id=job.id)
    return report
