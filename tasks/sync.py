"""The sync engine: read unsynced rows, transform, validate, upsert, flag, quarantine — batch by batch.

Three things overlap, each on its own connection: reading batch k+1 from the source, writing batch k to
the target, and flagging batch k-1 in the source. The source flag of a row is set only after the target
transaction holding it has committed, and only if the row still holds the values that were read, so a
crash at any point leaves rows unflagged (to be sent again), never flagged wrongly. At most three batches
are held in memory.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
from sqlalchemy.engine import Engine

from schemas.mapping import SyncMapping
from tasks import bookkeeping
from tasks.batch import send_batch
from tasks.catalog import MappingTables, source_table, target_table
from tasks.dialects import dialect_for
from tasks.errors import SyncError, translate
from tasks.extract import UnsyncedReader, last_key
from tasks.load import flag_rows

SyncStatus = Literal["success", "partial", "no_record", "skipped", "error"]
PHASES = ("read", "transform", "upsert", "flag", "quarantine")


@dataclass
class MappingSyncResult:
    """What one mapping's sync did (the per-mapping row of `SyncReport`)."""

    mapping: str
    read: int = 0
    upserted: int = 0
    flagged: int = 0
    quarantined: int = 0
    changed_in_flight: int = 0
    seconds: float = 0.0
    status: SyncStatus = "success"
    message: str = ""
    pending_at_start: int = 0
    batches: int = 0
    phase_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def settle(self) -> None:
        """Derive the final status from the counts (an error status is kept)."""
        self.changed_in_flight = self.upserted - self.flagged
        if self.status in ("error", "skipped"):
            return
        if self.read == 0:
            self.status = "no_record"
        elif self.quarantined or self.changed_in_flight:
            self.status = "partial"


@dataclass(frozen=True)
class Zones:
    """The engines a sync needs: where rows come from, where they go, where bookkeeping lives."""

    source: Engine
    target: Engine
    intranet: Engine


class _Timer:
    def __init__(self, result: MappingSyncResult) -> None:
        self.result = result

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.result.phase_seconds[name] += time.perf_counter() - started


def sync_mapping_rows(
    mapping: SyncMapping,
    zones: Zones,
    batch_size: int,
    on_batch: Callable[[MappingSyncResult], None] = lambda _: None,
) -> MappingSyncResult:
    """Sync every unsynced row of one mapping; SyncErrors end the run with status 'error' and a message."""
    result = MappingSyncResult(mapping=mapping.name)
    started = time.perf_counter()
    try:
        _run(mapping, zones, batch_size, result, on_batch)
    except SyncError as exc:
        result.status, result.message = "error", str(exc)
        if exc.transient:
            raise
    finally:
        result.seconds = time.perf_counter() - started
        result.settle()
    return result


def _run(
    mapping: SyncMapping,
    zones: Zones,
    batch_size: int,
    result: MappingSyncResult,
    on_batch: Callable[[MappingSyncResult], None],
) -> None:
    source_dialect, target_dialect = dialect_for(zones.source), dialect_for(zones.target)
    source = source_table(mapping, zones.source)
    reader = UnsyncedReader(mapping, source_dialect, source)
    timer = _Timer(result)
    with timer.phase("read"):
        result.pending_at_start = _guarded(reader.count_pending, mapping, "counting unsynced rows")
    if result.pending_at_start == 0:
        return  # an empty backlog costs one count: the target is not even looked at
    tables = MappingTables(source, target_table(mapping, zones.target))
    has_open_errors = bookkeeping.count_open_errors(zones.intranet, mapping.name) > 0

    def read(after: tuple[Any, ...] | None) -> pl.DataFrame:
        with timer.phase("read"):
            return _guarded(lambda: reader.read_batch(after, batch_size), mapping, "reading unsynced rows")

    def flag(guard: pl.DataFrame) -> int:
        with timer.phase("flag"):
            return flag_rows(source_dialect, tables.source, guard, mapping, reader.dtypes)

    reader_pool, flagger_pool = _workers()
    next_read: Future[pl.DataFrame] | None = reader_pool.submit(read, None)
    flagging: Future[int] | None = None
    try:
        while next_read is not None:
            raw = next_read.result()
            if raw.is_empty():
                break
            full = raw.height >= batch_size
            next_read = reader_pool.submit(read, last_key(raw, mapping)) if full else None
            result.read += raw.height
            batch = send_batch(
                raw, mapping, tables.target, target_dialect, zones.intranet,
                resolve_open_errors=has_open_errors, phase=timer.phase,
            )  # fmt: skip
            result.upserted += batch.landed.height
            result.quarantined += batch.quarantined
            if flagging is not None:
                result.flagged += flagging.result()
            flagging = flagger_pool.submit(flag, batch.guard)
            result.batches += 1
            on_batch(result)
    finally:
        if next_read is not None and not next_read.cancel():
            next_read.exception()  # wait: a read still running must not outlive the run
        if flagging is not None:
            result.flagged += flagging.result()


@functools.cache
def _workers() -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """One read-ahead thread and one flagging thread for the whole process.

    Reused across runs (and mappings run one after another): new threads per run each get their own malloc
    arena, and the process grew by tens of MB per run until MALLOC_ARENA_MAX was set.
    """
    return (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="zonesync-read"),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="zonesync-flag"),
    )


def _guarded(action: Callable[[], Any], mapping: SyncMapping, what: str) -> Any:
    try:
        return action()
    except SyncError:
        raise
    except Exception as exc:
        raise translate(exc, what=f"{what} in the {mapping.source_zone} zone", mapping=mapping.name) from exc
