"""What zonesync's runs produce: the result types of the four flows and of each mapping's sync, in one leaf.

Every engine module returns these and every reporter reads them, so they import nothing of tasks/: the
reporting and ledger code depend on what a run produced, never on the code that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from zonesync.schemas.mapping import HIDDEN

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

    def settle(self) -> None:
        """Derive the final status from the counts (an error status is kept)."""
        if self.status in ("error", "skipped"):
            return
        if self.read == 0:
            self.status = "no_record"
        elif self.quarantined or self.changed_in_flight:
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
Key = tuple[Any, ...]
Difference = Literal["missing_in_target", "only_in_target", "different"]
DIFFERENCES: dict[Difference, str] = {
    "missing_in_target": "missing in the target",
    "only_in_target": "only in the target",
    "different": "different",
}


@dataclass(frozen=True)
class GroupTotals:
    """Row count and amount sums of one group (canonical text of each `reconcile_by` value) in both zones.

    `expected`: the group's source rows satisfy the mapping's eligible filter, so the target should hold the
    same totals; ineligible source rows (e.g. failed payments) form groups of their own, expected only there.
    """

    values: tuple[str | None, ...]
    expected: bool
    source_rows: int
    source_amounts: tuple[Decimal, ...]
    target_rows: int
    target_amounts: tuple[Decimal, ...]

    @property
    def matches(self) -> bool:
        """Same count and sums in both zones (an unexpected group: none of its rows in the target)."""
        if not self.expected:
            return self.target_rows == 0
        return self.source_rows == self.target_rows and self.source_amounts == self.target_amounts


@dataclass(frozen=True)
class RowComparison:
    """The compared rows (eligible source rows vs target rows of the date): exact counts, keys up to a limit."""

    source_rows: int
    target_rows: int
    missing_in_target: int
    only_in_target: int
    different: int
    missing_in_target_keys: tuple[Key, ...]
    only_in_target_keys: tuple[Key, ...]
    different_keys: tuple[Key, ...]
    buckets: int
    fast_path: bool  # every bucket agreed: no row was fetched

    @property
    def ok(self) -> bool:
        """No key missing, extra or different."""
        return not (self.missing_in_target or self.only_in_target or self.different)

    def count(self, kind: Difference) -> int:
        """How many keys differ in one way."""
        return int(getattr(self, kind))

    def keys(self, kind: Difference) -> tuple[Key, ...]:
        """The listed keys that differ in one way."""
        listed: tuple[Key, ...] = getattr(self, f"{kind}_keys")
        return listed


@dataclass(frozen=True)
class Reconciliation:
    """How a mapping's two zones compare for a business date (None: the whole table)."""

    mapping: str
    business_date: date | None
    timezone: str
    key_columns: tuple[str, ...]
    group_by: tuple[str, ...]
    amount_columns: tuple[str, ...]
    groups: tuple[GroupTotals, ...]
    comparison: RowComparison
    list_limit: int
    seconds: float
    hidden_key_columns: frozenset[str] = frozenset()  # sensitive: their values are not shown in reports

    @property
    def ok(self) -> bool:
        """Totals of every expected group match and no row differs."""
        return self.comparison.ok and all(group.matches for group in self.groups)

    def headline(self) -> str:
        """One line: the totals verdict and the row comparison counts."""
        wrong = sum(not group.matches for group in self.groups)
        totals = "totals match" if not wrong else f"totals differ in {wrong} of {len(self.groups)} groups"
        c = self.comparison
        rows = ", ".join(f"{c.count(kind)} {label}" for kind, label in DIFFERENCES.items())
        return f"{totals}; {c.source_rows} source rows vs {c.target_rows} target rows compared: {rows}"

    def format_key(self, key: Key) -> str:
        """'payment_id=17' (composite keys comma-separated)."""
        named = zip(self.key_columns, key, strict=True)
        return ", ".join(f"{name}={HIDDEN if name in self.hidden_key_columns else value}" for name, value in named)

    def format_group(self, group: GroupTotals) -> str:
        """'status=S, currency=IDR' ('all rows' without reconcile_by columns)."""
        values = ("NULL" if value is None else value for value in group.values)
        return ", ".join(f"{name}={value}" for name, value in zip(self.group_by, values, strict=True)) or "all rows"


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
