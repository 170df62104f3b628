"""The sync engine: read unsynced rows, transform, validate, upsert, flag, quarantine — batch by batch.

Each batch is carried as `tasks.batch` describes: its unchanged rows are claimed (flagged and locked in an
open source transaction), written to the target, and the source transaction commits. Reading, claiming and
delivering overlap (`tasks/zones/pipeline.py`). A crash at any point leaves rows unflagged (to be sent again),
never flagged wrongly. At most three batches are held in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.jobs import BatchRecord
from zonesync.tasks.bookkeeping.quarantine import count_open_errors, resolve_synced
from zonesync.tasks.deletes.carrier import DeleteCarrier
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.schema.catalog import Reflections
from zonesync.tasks.schema.contract import watched_source, watched_target
from zonesync.tasks.schema.watch import ShapeWatch
from zonesync.tasks.sync.batch import BatchCarrier, Claim, Phase, SourceSide, TargetSide, no_phase
from zonesync.tasks.sync.extract import UnsyncedReader, last_key
from zonesync.tasks.sync.partitions import Partition, in_partition
from zonesync.tasks.zones.engines import dialect_for, reconciling_for
from zonesync.tasks.zones.failures import translate
from zonesync.tasks.zones.pipeline import Steps, carry_batches

# Wraps each step of the syncs started in this context (the benchmarks measure the phases through it).
PHASE_HOOK: ContextVar[Phase] = ContextVar("zonesync_phase_hook", default=no_phase)


@dataclass(frozen=True)
class Zones:
    """The engines a sync needs: where rows come from, where they go, where bookkeeping lives; and the tables
    reflected from them during the run (each partition reuses them while their catalog is unchanged)."""

    source: Engine
    target: Engine
    intranet: Engine
    reflections: Reflections = field(default_factory=Reflections, compare=False)


def sync_mapping_rows(
    mapping: SyncMapping,
    zones: Zones,
    batch_size: int,
    on_batch: Callable[[MappingSyncResult], None] = lambda _: None,
    record: BatchRecord | None = None,
    result: MappingSyncResult | None = None,
    partition: Partition | None = None,
) -> MappingSyncResult:
    """Sync every unsynced row of one mapping (or of one of its partitions); SyncErrors end the run with status
    'error' and a message (transient ones are raised, for a retry, once `result` holds what this attempt did).

    `record` runs in the transaction that commits each batch's flags when the intranet zone is the source;
    `result` carries the counts of earlier attempts of the same run (or of other partitions). The mapping's deletes
    and its quarantine's resolutions go with its first partition. `PHASE_HOOK` wraps each step (read,
    transform, upsert, flag, quarantine): how a benchmark measures them from outside."""
    result = result or MappingSyncResult(mapping=mapping.name)
    result.status, result.message = "success", ""
    started, earlier = time.perf_counter(), result.seconds
    try:
        _run(mapping, zones, batch_size, result, on_batch, record, PHASE_HOOK.get(), partition)
    except SyncError as exc:
        result.status, result.message = "error", str(exc)
        if exc.transient:
            raise
    finally:
        result.seconds = earlier + time.perf_counter() - started
        result.settle()
    return result


def _run(
    mapping: SyncMapping,
    zones: Zones,
    batch_size: int,
    result: MappingSyncResult,
    on_batch: Callable[[MappingSyncResult], None],
    record: BatchRecord | None,
    phase: Phase,
    partition: Partition | None,
) -> None:
    source_dialect, target_dialect = dialect_for(zones.source), dialect_for(zones.target)
    if partition is None or partition.index == 0:
        with phase("quarantine"):  # entries of rows synced some other way since (an update, a fix by hand)
            _guarded(lambda: resolve_synced(zones.intranet, mapping, zones.source), mapping,
                     "resolving synced entries")  # fmt: skip
        with phase("deletes"):  # before the rows: a key deleted and inserted again is deleted first, then sent
            DeleteCarrier(mapping, zones.source, zones.target, zones.intranet, record).carry(batch_size, result)
    watch = ShapeWatch(mapping.name)
    source = watched_source(watch, mapping, source_dialect, zones.reflections)
    only = () if partition is None else (in_partition(reconciling_for(zones.source), source, mapping, partition),)
    reader = UnsyncedReader(mapping, source_dialect, source, only)
    with phase("read"):  # a partition of a run that counted its whole backlog only asks whether it has any
        known = partition is not None and result.pending_at_start > 0
        pending = _guarded(reader.any_pending if known else reader.count_pending, mapping, "counting unsynced rows")
    result.pending_at_start = result.pending_at_start or int(pending)
    if not pending:
        return  # an empty backlog costs one count: the target is not even looked at
    target = watched_target(watch, mapping, zones.intranet, reader.table, source_dialect, target_dialect,
                            scheduled=True, reflections=zones.reflections)  # fmt: skip
    carrier = BatchCarrier(
        mapping, SourceSide(reader.table, source_dialect, reader.dtypes, only), TargetSide(target, target_dialect),
        zones.intranet, resolve_open_errors=count_open_errors(zones.intranet, mapping.name) > 0,
        reopen_errors=True, record=record, phase=phase, watch=watch,
    )  # fmt: skip

    def read(after: tuple[Any, ...] | None) -> pl.DataFrame:
        with phase("read"):
            return _guarded(lambda: reader.read_batch(after, batch_size), mapping, "reading unsynced rows")

    def claim(raw: pl.DataFrame) -> Claim:
        result.read += raw.height
        return carrier.claim(carrier.prepare(raw))

    def deliver(claim: Claim) -> None:
        outcome = carrier.deliver(claim)
        result.upserted += outcome.landed.height
        result.flagged += outcome.synced
        result.changed_in_flight += outcome.changed.height
        result.quarantined += outcome.quarantined
        result.batches += 1
        on_batch(result)

    steps = Steps(read, lambda raw: last_key(raw, mapping), claim, deliver, carrier.abandon)
    carry_batches(steps, full=batch_size, overlap=source_dialect.row_locks)


def _guarded(action: Callable[[], Any], mapping: SyncMapping, what: str) -> Any:
    try:
        return action()
    except SyncError:
        raise
    except Exception as exc:
        raise translate(exc, what=f"{what} in the {mapping.source_zone} zone", mapping=mapping.name) from exc
