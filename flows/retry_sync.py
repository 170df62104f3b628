"""Cron retry sync (DESIGN §4.2): carry every unsynced intranet row to the internet zone.

Query source rows where is_sync = false → transform & validate for the target schema → push (upsert) →
patch is_sync = true. Bad rows are quarantined in `sync_error` and the rest go on; a failed query or push
ends that mapping's run with an error status while the other mappings still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from schemas.mapping import Direction, SyncMapping
from schemas.registry import get_mapping, select_mappings
from schemas.settings import ZONES, get_settings
from tasks import bookkeeping
from tasks.engines import get_engine, zone_url
from tasks.errors import ConfigError, retry_transient
from tasks.lease import LeaseBusy, holding, mapping_lease
from tasks.report import BatchProgress, publish_summary
from tasks.sync import MappingSyncResult, Zones, sync_mapping_rows
from tasks.update import recover

FLOW_KEY = "retry-sync"
LEASE_SECONDS = 120  # renewed after every batch; a crashed run blocks the mapping at most this long


@dataclass
class SyncReport:
    """The result of a retry sync run: one entry per mapping."""

    mappings: list[MappingSyncResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No mapping ended with an error."""
        return all(result.status != "error" for result in self.mappings)

    def total(self, count: str) -> int:
        """The sum of one count (read, upserted, flagged, quarantined, changed_in_flight) over mappings."""
        return sum(getattr(result, count) for result in self.mappings)

    def __getitem__(self, mapping: str) -> MappingSyncResult:
        return next(result for result in self.mappings if result.mapping == mapping)

    def job_status(self) -> bookkeeping.JobStatus:
        """The batch_job status this run earns."""
        statuses = {result.status for result in self.mappings}
        if "error" in statuses:
            return "PARTIAL" if self.total("flagged") else "FAILED"
        if statuses <= {"no_record", "skipped"}:
            return "NO_RECORD"
        return "PARTIAL" if "partial" in statuses else "SUCCESS"


@task(
    name="sync-mapping",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def sync_mapping(mapping_name: str, batch_size: int) -> MappingSyncResult:
    """Sync one mapping's unsynced rows, batch by batch (transient errors are retried by Prefect)."""
    mapping = get_mapping(mapping_name)
    zones = Zones(
        source=get_engine(mapping.source_zone),
        target=get_engine(mapping.target_zone),
        intranet=get_engine("intranet"),
    )
    progress = BatchProgress(mapping, FLOW_KEY)
    try:
        with holding(zones.intranet, mapping_lease(mapping.name), ttl=LEASE_SECONDS) as lease:

            def on_batch(result: MappingSyncResult) -> None:
                lease.renew()
                progress(result)

            result = sync_mapping_rows(mapping, zones, batch_size, on_batch=on_batch)
    except LeaseBusy as busy:  # an overlapping run is syncing this mapping: harmless, nothing to do here
        result = MappingSyncResult(mapping=mapping.name, status="skipped", message=str(busy))
    progress.finish(result)
    logger = get_run_logger()
    log = logger.error if result.status == "error" else logger.info
    log(
        "%s: %s — read %s, upserted %s, flagged %s, quarantined %s, changed in flight %s (%.2fs) %s",
        mapping.name, result.status, result.read, result.upserted, result.flagged, result.quarantined,
        result.changed_in_flight, result.seconds, result.message,
    )  # fmt: skip
    return result


def _outcome(state: State[MappingSyncResult], mapping: str) -> MappingSyncResult:
    """The task's result, or an error result carrying the exception's message."""
    if state.is_completed():
        return state.result()
    try:
        state.result()
    except Exception as exc:
        return MappingSyncResult(mapping=mapping, status="error", message=str(exc))
    return MappingSyncResult(mapping=mapping, status="error", message=f"task ended {state.type.value}")


def check_run_settings(direction: Direction, names: list[str] | None) -> list[SyncMapping]:
    """Fail fast on unknown mappings and bad zone URLs; return the selected mappings."""
    selected = select_mappings(direction, names)
    for zone in ZONES:
        zone_url(zone)
    return selected


@flow(name="retry-sync", description="Cron retry sync: push unsynced intranet rows to the internet zone.")
def retry_sync(mappings: list[str] | None = None, batch_size: int | None = None) -> SyncReport:
    """Sync every (or the named) intranet_to_internet mapping; returns per-mapping counts."""
    selected = check_run_settings("intranet_to_internet", mappings)
    size = batch_size or get_settings().batch_size
    intranet = get_engine("intranet")
    if missing := bookkeeping.missing_tables(intranet):
        raise ConfigError(
            f"bookkeeping tables {', '.join(missing)} are missing in the intranet zone: run `zonesync init`"
        )
    for line in recover(intranet):  # updates a crash left half-done are repaired before anything else
        get_run_logger().warning("recovered an interrupted update: %s", line)
    job_id = bookkeeping.start_job(intranet, FLOW_KEY, datetime.now(UTC).date(), str(runtime.flow_run.id or ""))
    report = SyncReport()
    failure = ""
    try:
        for mapping in selected:
            report.mappings.append(_outcome(sync_mapping(mapping.name, size, return_state=True), mapping.name))
    except BaseException as exc:
        failure = f"run aborted: {exc}"
        raise
    finally:
        counts = bookkeeping.JobCounts(report.total("read"), report.total("flagged"), report.total("quarantined"))
        messages = "; ".join([f"{r.mapping}: {r.message}" for r in report.mappings if r.message] + [failure][:1])
        status = "FAILED" if failure else report.job_status()
        bookkeeping.finish_job(intranet, job_id, status, counts, messages.strip("; "))
    publish_summary(FLOW_KEY, "Retry sync", report.mappings, intranet)
    return report
