"""Cron retry sync: carry every unsynced intranet row to the internet zone.

Query source rows where is_sync = false → transform & validate for the target schema → push (upsert) →
patch is_sync = true. Bad rows are quarantined in `sync_error` and the rest go on; a failed query or push
ends that mapping's run with an error status while the other mappings still run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.states import State

from zonesync.flows.outcomes import flow_with_outcome, job_state
from zonesync.schemas.registry import get_mapping
from zonesync.schemas.settings import BatchSize, FanOut, Workers, get_settings
from zonesync.tasks.bookkeeping.jobs import RETRY_SYNC_JOB
from zonesync.tasks.bookkeeping.ledger import job_ledger
from zonesync.tasks.prefect_tasks import check_run_settings, outcome, prepare_intranet, sync_mapping
from zonesync.tasks.reporting.events import emit_refusals
from zonesync.tasks.reporting.sync_run import publish_summary
from zonesync.tasks.results import SyncReport
from zonesync.tasks.sync.fan_out import carry_mapping, publish_slice_result
from zonesync.tasks.sync.slices import Slice

FLOW_KEY = RETRY_SYNC_JOB


def synced(report: SyncReport) -> State:
    """The state its batch_job status names: Completed, "NoRecord", "Partial", "Skipped", or Failed."""
    return job_state(report, report.job_status(), report.headline())


@flow_with_outcome(
    synced, name="retry-sync", description="Cron retry sync: push unsynced intranet rows to the internet zone."
)
def retry_sync(
    mappings: list[str] | None = None,
    batch_size: BatchSize | None = None,
    workers: Workers | None = None,
    fan_out: FanOut | None = None,
) -> SyncReport:
    """Sync every (or the named) intranet_to_internet mapping; returns per-mapping counts.

    Args:
        mappings: the mappings to sync; none (the default) syncs every intranet_to_internet mapping.
        batch_size: rows per batch; none (the default) takes ZONESYNC_BATCH_SIZE.
        workers: slices per partitioned mapping; none (the default) takes ZONESYNC_WORKERS.
        fan_out: where slices run: "tasks" (threads of this run), "work-pool" (child flow runs of the slice
            deployment) or "dask" (ZONESYNC_DASK_ADDRESS's cluster); none (the default) takes ZONESYNC_FAN_OUT.
    """
    selected = check_run_settings("intranet_to_internet", mappings)
    settings = get_settings()
    size = batch_size or settings.batch_size
    intranet = prepare_intranet()
    report = SyncReport()
    with job_ledger(intranet, FLOW_KEY, datetime.now(UTC).date()) as job:
        for mapping in selected:
            result = carry_mapping(mapping, size, FLOW_KEY, job.id, workers or settings.workers,
                                   fan_out or settings.fan_out)  # fmt: skip
            report.mappings.append(result)
            job.settle(report.mappings)  # after each mapping, so an aborted run still records what it did
            emit_refusals(report.mappings[-1], FLOW_KEY, job.id)
    publish_summary(FLOW_KEY, "Retry sync", report.mappings, intranet, status=report.job_status(), job_id=job.id)
    return report


@flow_with_outcome(
    synced, name="retry-sync-slice", description="One slice of a retry sync's partitioned mapping (its child run)."
)
def retry_sync_slice(mapping: str, slice_index: int, slices: int, batch_size: BatchSize, job_id: int) -> SyncReport:
    """Carry the free partitions of one mapping as one of `slices` workers, counting into the parent's job_id.

    Started by `retry_sync` with fan_out "work-pool" (one run per slice); the counts go back to it as the
    `retry-sync-slice-result` artifact.

    Args:
        mapping: the partitioned mapping the parent run fans out.
        slice_index: this slice, from 0.
        slices: how many slices the parent started.
        batch_size: rows per batch.
        job_id: the parent run's batch_job row, which counts every batch this slice commits.
    """
    get_mapping(mapping)
    state = sync_mapping(mapping, batch_size, FLOW_KEY, job_id, Slice(slice_index, slices), return_state=True)
    report = SyncReport([outcome(state, mapping)])
    publish_slice_result(report.mappings[0])
    return report
