"""Slices: the workers that carry one run's partitioned mapping together, and how their results add up.

A run that has W workers for a partitioned mapping starts W slices of it: threads of its process (Prefect's task
runner, or a Dask cluster through prefect-dask), or child flow runs on a work pool. Each slice walks every
partition, from its own share of them on (so that siblings start apart), and carries each one whose lease is
free; one that finishes early takes what is left, which absorbs skew. Only the mapping's name and the slice's
numbers cross a process boundary; the leases, not the slices, decide who carries what, so a slice that dies
only leaves its partition to the next run, as any run would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from zonesync.tasks.results import MappingSyncResult, SyncStatus

T = TypeVar("T")
SUMMED = ("read", "upserted", "flagged", "quarantined", "changed_in_flight", "batches", "deletes_applied",
          "deletes_skipped", "deletes_refused")  # fmt: skip


@dataclass(frozen=True)
class Slice:
    """One of `count` workers sharing a run's mapping (`index` from 0)."""

    index: int
    count: int

    @property
    def label(self) -> str:
        """'slice 2 of 4'."""
        return f"slice {self.index + 1} of {self.count}"


def slices_for(parts: int, workers: int) -> list[Slice]:
    """The slices a run starts: one per worker, never more than the mapping has parts."""
    count = max(1, min(workers, parts))
    return [Slice(index, count) for index in range(count)]


def in_slice_order(parts: Sequence[T], slice_: Slice | None) -> list[T]:
    """The parts in the order a slice walks them: from the start of its own share on, wrapping around."""
    if slice_ is None or slice_.count == 1:
        return list(parts)
    start = slice_.index * len(parts) // slice_.count
    return [*parts[start:], *parts[:start]]


def merged(mapping: str, results: Sequence[MappingSyncResult]) -> MappingSyncResult:
    """One mapping's result from its slices': counts summed, the longest time, the worst status, every message;
    a partition is left to other runs only when no slice carried it."""
    total = MappingSyncResult(mapping=mapping)
    for result in results:
        for count in SUMMED:
            setattr(total, count, getattr(total, count) + getattr(result, count))
    total.seconds = max((result.seconds for result in results), default=0.0)
    total.pending_at_start = max((result.pending_at_start for result in results), default=0)
    total.partitions_carried = [number for result in results for number in result.partitions_carried]
    total.partitions_left = [number for result in results for number in result.partitions_left]
    total.status = _worst([result.status for result in results if result.status != "skipped"])
    total.message = "; ".join(dict.fromkeys(result.message for result in results if result.message))
    total.settle()
    note_left(total)
    return total


def _worst(statuses: Sequence[SyncStatus]) -> SyncStatus:
    for status in ("error", "partial", "success"):
        if status in statuses:
            return status
    return "success"  # settled from the counts: no_record when nothing was read


def note_left(result: MappingSyncResult) -> None:
    """Say which partitions another run was carrying (none that this run carried too, at another moment); a run
    that carried none of them skipped the mapping."""
    result.partitions_carried = sorted(set(result.partitions_carried))
    result.partitions_left = sorted(set(result.partitions_left) - set(result.partitions_carried))
    if not result.partitions_left or result.status == "error":
        return
    if not result.partitions_carried:
        result.status, result.message = "skipped", "every partition is busy: other zonesync runs are working on them"
        return
    shown = ", ".join(map(str, result.partitions_left))
    result.message = " ".join(filter(None, [result.message, f"partitions {shown} left to other runs"]))
