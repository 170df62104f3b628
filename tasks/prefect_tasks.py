"""Every Prefect task zonesync declares, and the run preparation shared by the scheduled flows (retry sync,
end-day check). A task is one mapping's step, never one row or one batch's fraction of it."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import get_run_logger, runtime, task
from prefect.states import State
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import ConfigError, SyncError
from zonesync.schemas.mapping import Direction, SyncMapping
from zonesync.schemas.registry import get_mapping, select_mappings
from zonesync.schemas.settings import ZONES, get_settings
from zonesync.tasks.bookkeeping import tables as bookkeeping
from zonesync.tasks.bookkeeping.lease import Lease, carried_by, kept_alive
from zonesync.tasks.bookkeeping.ledger import batch_recorder
from zonesync.tasks.prefect_options import task_options
from zonesync.tasks.reconcile.compare import reconcile_mapping
from zonesync.tasks.reconcile.contract import check_contract
from zonesync.tasks.reconcile.findings import ContractCheck, Reconciliation
from zonesync.tasks.reporting.events import emit_contract_broken, emit_zones_differ
from zonesync.tasks.reporting.sync_run import BatchProgress
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.setup.inspection import backlog
from zonesync.tasks.sync.partitions import CarriedPart, Partition, carried_parts
from zonesync.tasks.sync.run import Zones, sync_mapping_rows
from zonesync.tasks.sync.slices import Slice, in_slice_order, note_left
from zonesync.tasks.update.recovery import recover_intents
from zonesync.tasks.zones.budget import within_budget
from zonesync.tasks.zones.engines import get_engine, zone_url

# What the failed attempts of a sync task run did, by task run id: Prefect's retry goes on from there.
_attempts: dict[str, MappingSyncResult] = {}


def check_run_settings(direction: Direction | None, names: list[str] | None) -> list[SyncMapping]:
    """Fail fast on unknown mappings and bad zone URLs; return the selected mappings (of one direction, or both)."""
    selected = select_mappings(direction, names)
    for zone in ZONES:
        zone_url(zone)
    return selected


def require_bookkeeping() -> Engine:
    """The intranet engine; a ConfigError when `zonesync init` has not created the bookkeeping tables."""
    intranet = get_engine("intranet")
    if missing := bookkeeping.missing_tables(intranet):
        raise ConfigError(
            f"bookkeeping tables {', '.join(missing)} are missing in the intranet zone: run `zonesync init`"
        )
    return intranet


def prepare_intranet() -> Engine:
    """The intranet engine, once its bookkeeping tables exist and interrupted updates are repaired."""
    intranet = require_bookkeeping()
    for line in recover_intents(intranet):  # updates a crash left half-done are repaired before anything else
        get_run_logger().warning("recovered an interrupted update: %s", line)
    return intranet


@task(name="sync-mapping", **task_options())
def sync_mapping(
    mapping_name: str, batch_size: int, flow_key: str, job_id: int | None = None, slice_: Slice | None = None
) -> MappingSyncResult:
    """Sync one mapping's unsynced rows, batch by batch (transient errors are retried by Prefect, the counts of
    every attempt adding up); each batch is counted in the run's batch_job row as it commits. A slice carries
    the free partitions it meets, beside its sibling slices (tasks/sync/slices.py)."""
    mapping = get_mapping(mapping_name)
    zones = Zones(
        source=get_engine(mapping.source_zone),
        target=get_engine(mapping.target_zone),
        intranet=get_engine("intranet"),
    )
    progress = BatchProgress(mapping, flow_key, slice_)
    with within_budget(f"{mapping.name} ({slice_.label})" if slice_ else mapping.name):
        result = _sync_leased(mapping, zones, batch_size, job_id, progress, slice_)
    progress.finish(result)
    logger = get_run_logger()
    log = logger.error if result.status == "error" else logger.info
    log(
        "%s%s: %s — read %s, upserted %s, flagged %s, quarantined %s, changed in flight %s (%.2fs) %s",
        mapping.name, f" ({slice_.label})" if slice_ else "", result.status, result.read, result.upserted,
        result.flagged, result.quarantined, result.changed_in_flight, result.seconds, result.message,
    )  # fmt: skip
    return result


def _sync_leased(mapping: SyncMapping, zones: Zones, batch_size: int, job_id: int | None, progress: BatchProgress,
                 slice_: Slice | None) -> MappingSyncResult:  # fmt: skip
    """Sync each part of the mapping whose lease is free (the whole mapping, or each of its partitions in turn): a
    part another run holds is left to it. The counts of every part and of earlier attempts add up."""
    task_run = str(runtime.task_run.id or "")
    result = _attempts.pop(task_run, None) or MappingSyncResult(mapping=mapping.name)  # earlier attempts' counts
    parts = carried_parts(mapping, zones.source)
    if len(parts) > 1:
        result.pending_at_start = result.pending_at_start or backlog(mapping, zones.source)
    # Slices of one run mark the partitions they carried, so that their siblings do not read them again.
    mark = carried_by(f"job-{job_id}") if slice_ is not None and job_id is not None else None
    busy = in_slice_order(parts, slice_)
    for _ in range(2):  # the parts found busy are tried once more at the end: a holder may have died meanwhile
        busy = _carry_free(busy, mapping, zones, batch_size, job_id, progress, result, mark)
        if result.status == "error":
            break
    for part in busy:
        _left(result, part)
    if slice_ is None:  # a slice's siblings may have carried what it left: the run says so once they are merged
        note_left(result)
    return result


def _carry_free(parts: list[CarriedPart], mapping: SyncMapping, zones: Zones, batch_size: int, job_id: int | None,
                progress: BatchProgress, result: MappingSyncResult, mark: str | None) -> list[CarriedPart]:  # fmt: skip
    """Carry each part whose lease is free, in turn (until one ends in error); the parts found busy."""
    busy = []
    for part in parts:
        lease = Lease(zones.intranet, part.lease, get_settings().lease_seconds, mark)
        if not lease.try_acquire():  # an overlapping run is syncing this part: harmless, nothing to do here
            busy.append(part)
            continue
        try:
            _sync_holding(mapping, zones, lease, batch_size, job_id, progress, result, part.partition)
        except SyncError:  # transient: Prefect retries the task, which goes on from these counts
            _attempts[str(runtime.task_run.id or "")] = result
            raise
        if part.partition is not None:
            result.partitions_carried.append(part.partition.index + 1)
        if result.status == "error":
            break
    return busy


def _left(result: MappingSyncResult, part: CarriedPart) -> None:
    """Note a part found busy: a partition's number, or (the whole mapping) a skip."""
    if part.partition is not None:
        result.partitions_left.append(part.partition.index + 1)
    else:
        result.status, result.message = "skipped", f"{part.lease} is busy: another zonesync run is working on it"


def _sync_holding(mapping: SyncMapping, zones: Zones, lease: Lease, batch_size: int, job_id: int | None,
                  progress: BatchProgress, result: MappingSyncResult,
                  partition: Partition | None) -> None:  # fmt: skip
    """Sync while holding the part's lease (renewed by a keeper, even while a statement waits); a lease lost
    meanwhile stops the run at its next batch with an error that keeps what was done."""
    record = batch_recorder(job_id) if job_id is not None else None

    def on_batch(result: MappingSyncResult) -> None:
        # Its own short transaction: renewed inside the batch's, the lease row would stay locked while the batch
        # waits for the other zone, and a run or an update asking for the lease would wait as long for "busy".
        lease.keep()  # LeaseLost if another run took it (the keeper renews it between batches too)
        progress(result)

    done = False
    try:
        with kept_alive(lease):
            sync_mapping_rows(mapping, zones, batch_size, on_batch, record, result, partition)
        done = result.status != "error"
    finally:
        lease.release(done=done)  # a part that failed midway is no sibling's to skip


def outcome(state: State[MappingSyncResult], mapping: str) -> MappingSyncResult:
    """A sync task's result, or an error result carrying the exception's message (and what its attempts did)."""
    if state.is_completed():
        return state.result()
    done = _attempts.pop(str(state.state_details.task_run_id or ""), None)
    result = done or MappingSyncResult(mapping=mapping)
    result.status, result.message = "error", failure_message(state)
    return result


def failure_message(state: State[Any]) -> str:
    """Why a task run did not complete: its exception's message."""
    try:
        state.result()
    except Exception as exc:
        return str(exc)
    return f"task ended {state.type.value}"


@task(name="reconcile-mapping", **task_options())
def reconcile(mapping_name: str, business_date: date) -> Reconciliation:
    """Compare both zones for the business date: totals per group, and the keys missing or different."""
    mapping = get_mapping(mapping_name)
    found = reconcile_mapping(
        mapping, business_date, get_engine(mapping.source_zone), get_engine(mapping.target_zone),
        timezone=get_settings().business_timezone,
    )  # fmt: skip
    log = get_run_logger().info if found.ok else get_run_logger().warning
    log("%s: reconciliation of %s: %s", mapping.name, business_date, found.headline())
    emit_zones_differ(found)
    return found


@task(name="check-contract", **task_options())
def contract_check(mapping_name: str) -> ContractCheck:
    """Compare the mapping's rows flagged synced with the other zone: a difference broke the writers' contract."""
    mapping = get_mapping(mapping_name)
    found = check_contract(mapping, get_engine(mapping.source_zone), get_engine(mapping.target_zone))
    log = get_run_logger().info if found.ok else get_run_logger().error
    log("%s: %s", mapping.name, found.headline())
    emit_contract_broken(found)
    return found
