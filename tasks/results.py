"""What zonesync's runs produce: the result types of the four flows and of each mapping's sync, in one leaf (with
`tasks/reconcile/findings.py`, what a reconciliation finds).

Every engine module returns these and every reporter reads them, so they import nothing of tasks/ but the
findings: the reporting and ledger code depend on what a run produced, never on the code that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from zonesync.tasks.reconcile.findings import Reconciliation

# -- a mapping's sync (retry sync, end-day check) and the batch_job status a run earns --
SyncStatus = Literal["success", "partial", "no_record", "skipped", "error"]
JobStatus = Literal["RUNNING", "SUCCESS", "NO_RECORD", "PARTIAL", "FAILED", "SKIPPED", "ABORTED"]


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
    # Rows deleted in the source (tasks/deletes/): carried to the target (or already gone there), skipped by the
    # policy or by a later insert of the key, refused (the target row newer, or in a state never deleted).
    deletes_applied: int = 0
    deletes_skipped: int = 0
    deletes_refused: int = 0
    # A partitioned mapping (docs/scaling.md): the partitions (1 to N) this run carried, and those it found busy
    # with another run and left to it.
    partitions_carried: list[int] = field(default_factory=list)
    partitions_left: list[int] = field(default_factory=list)

    @property
    def deletes(self) -> int:
        """Tombstones carried by this run, whatever their outcome."""
        return self.deletes_applied + self.deletes_skipped + self.deletes_refused

    def deletes_line(self) -> str:
        """'2 applied, 1 skipped, 1 refused': what the run did with the rows deleted in the source."""
        return f"{self.deletes_applied:,} applied, {self.deletes_skipped:,} skipped, {self.deletes_refused:,} refused"

    def settle(self) -> None:
        """Derive the final status from the counts (an error status is kept)."""
        if self.status in ("error", "skipped"):
            return
        if self.read == 0 and self.deletes == 0:
            self.status = "no_record"
        elif self.quarantined or self.changed_in_flight or self.deletes_refused:
            self.status = "partial"


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

    def job_status(self) -> JobStatus:
        """The batch_job status this run earns."""
        return job_status(self.mappings)

    def headline(self) -> str:
        """One line: the counts, and which mappings failed."""
        counts = ", ".join(f"{self.total(count)} {count}" for count in ("read", "upserted", "flagged", "quarantined"))
        failed = [result.mapping for result in self.mappings if result.status == "error"]
        return counts + (f"; failed: {', '.join(failed)}" if failed else "")


def job_status(results: Sequence[MappingSyncResult]) -> JobStatus:
    """The batch_job status that a run with these per-mapping results earns."""
    statuses = {result.status for result in results}
    if "error" in statuses:
        return "PARTIAL" if sum(result.flagged for result in results) else "FAILED"
    if "skipped" in statuses:
        return "SKIPPED" if statuses <= {"no_record", "skipped"} else "PARTIAL"
    if statuses <= {"no_record"}:
        return "NO_RECORD"
    return "PARTIAL" if "partial" in statuses else "SUCCESS"


# -- the real-time push --
PushStatus = Literal["success", "pending", "error"]
Stage = Literal["source", "target", "flag"]


@dataclass
class KeyOutcome:
    """What happened to one record, by its key (source column names)."""

    key: dict[str, Any]
    status: PushStatus
    reason: str = ""
    detail: str = ""


@dataclass
class PushResult:
    """The answer to a push: overall status, the stage that failed (if any), and the outcome per key."""

    mapping: str
    status: PushStatus
    stage: Stage | None = None
    reason: str = ""
    message: str = ""
    outcomes: list[KeyOutcome] = field(default_factory=list)

    @property
    def keys(self) -> list[dict[str, Any]]:
        """The keys of the records, in the order they were sent."""
        return [outcome.key for outcome in self.outcomes]


# -- the update with rollback --
UpdateStatus = Literal["success", "error"]


@dataclass
class UpdateResult:
    """What the update did: success (both zones hold the new values) or error (both hold the old ones)."""

    mapping: str
    key: dict[str, Any]
    status: UpdateStatus
    reason: str = ""
    message: str = ""


# -- the end-day check and its reconciliation --
@dataclass
class EndDayReport:
    """The result of an end-day check: the ledger outcome, per-mapping sync counts and reconciliations."""

    business_date: date
    status: JobStatus = "RUNNING"
    job_id: int | None = None
    message: str = ""
    mappings: list[MappingSyncResult] = field(default_factory=list)
    reconciliations: list[Reconciliation] = field(default_factory=list)
    reconcile_errors: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    @property
    def ok(self) -> bool:
        """Every eligible row synced and the zones agree for the business date."""
        return self.status in ("SUCCESS", "NO_RECORD")

    def __getitem__(self, mapping: str) -> MappingSyncResult:
        return next(result for result in self.mappings if result.mapping == mapping)

    def reconciliation(self, mapping: str) -> Reconciliation:
        """The reconciliation of one mapping."""
        return next(found for found in self.reconciliations if found.mapping == mapping)

    def problems(self) -> list[str]:
        """What the reconciliation found wrong: zones that differ, or why it could not run."""
        differ = [f"{r.mapping}: zones differ for {self.business_date} ({r.headline()})"
                  for r in self.reconciliations if not r.ok]  # fmt: skip
        return differ + [
            f"{mapping}: reconciliation failed: {error}" for mapping, error in self.reconcile_errors.items()
        ]
