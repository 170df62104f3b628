"""What a reconciliation finds (the end-day check's comparison of a business date, the scheduled check of the
writers' contract): result types only, a leaf beside `tasks/results.py`, which imports nothing of tasks/ but them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from zonesync.schemas.mapping import HIDDEN

Key = tuple[Any, ...]
GroupValues = tuple[str | None, ...]  # the canonical text of a group's `reconcile_by` values


def format_key(columns: tuple[str, ...], hidden: frozenset[str], key: Key) -> str:
    """'payment_id=17' (composite keys comma-separated), sensitive columns' values hidden."""
    return ", ".join(f"{name}={HIDDEN if name in hidden else value}" for name, value in zip(columns, key, strict=True))


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

    values: GroupValues
    expected: bool
    source_rows: int
    source_amounts: tuple[Decimal, ...]
    target_rows: int
    target_amounts: tuple[Decimal, ...]
    differing_rows: int = 0  # rows of the group in both zones whose values differ (the row comparison's count)

    @property
    def matches(self) -> bool:
        """Same count and sums in both zones and no row of the group different (an unexpected group: none of its
        rows in the target): the totals never say "match" of a group whose rows the key list says differ."""
        if not self.expected:
            return self.target_rows == 0
        same_totals = self.source_rows == self.target_rows and self.source_amounts == self.target_amounts
        return same_totals and not self.differing_rows


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
    different_in_groups: Mapping[GroupValues, int] = field(default_factory=dict)  # different rows per group

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
    pending_deletes: int = 0  # the mapping's tombstones not carried yet, whatever their date (tasks/deletes/)

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
        deletes = f"; {self.pending_deletes} delete(s) not carried yet" if self.pending_deletes else ""
        return f"{totals}; {c.source_rows} source rows vs {c.target_rows} target rows compared: {rows}{deletes}"

    def format_key(self, key: Key) -> str:
        """'payment_id=17' (composite keys comma-separated)."""
        return format_key(self.key_columns, self.hidden_key_columns, key)

    def format_group(self, group: GroupTotals) -> str:
        """'status=S, currency=IDR' ('all rows' without reconcile_by columns)."""
        values = ("NULL" if value is None else value for value in group.values)
        return ", ".join(f"{name}={value}" for name, value in zip(self.group_by, values, strict=True)) or "all rows"


@dataclass(frozen=True)
class ContractCheck:
    """A mapping's flagged source rows against the other zone (tasks/reconcile/contract.py): the rows whose
    source says synced while the target holds something else broke the writers' contract."""

    mapping: str
    flagged_rows: int  # source rows flagged synced, compared
    suspected: int  # of them, missing from the target or different there when scanned
    broken_keys: tuple[Key, ...]  # re-checked: flagged and unchanged in the source, different in the target
    rechecked: int  # suspects re-checked (the first ones by key hash, up to a limit)
    key_columns: tuple[str, ...]
    seconds: float
    hidden_key_columns: frozenset[str] = frozenset()

    @property
    def unchecked(self) -> int:
        """Suspects beyond the re-check limit: likely breaks too, not confirmed."""
        return self.suspected - self.rechecked

    @property
    def ok(self) -> bool:
        return not self.broken_keys and not self.unchecked

    def headline(self) -> str:
        """One line: how many flagged rows were compared and how many broke the contract."""
        if self.ok:
            return f"{self.flagged_rows} synced row(s) checked: each is in the target as in the source"
        more = f" (and {self.unchecked} more suspect(s) not re-checked)" if self.unchecked else ""
        return (f"{len(self.broken_keys)} row(s) flagged synced differ in the target or are missing there{more}: "
                "changed without setting the flag back to false")  # fmt: skip

    def format_key(self, key: Key) -> str:
        """'merchant_id=17' (composite keys comma-separated)."""
        return format_key(self.key_columns, self.hidden_key_columns, key)


@dataclass
class ContractReport:
    """The scheduled reconciliation (flows/reconcile_zones.py): each mapping's contract check, or why it failed."""

    checks: list[ContractCheck] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # mapping -> why it could not be checked

    @property
    def broken(self) -> list[ContractCheck]:
        return [check for check in self.checks if not check.ok]

    def headline(self) -> str:
        """One line for the run's state."""
        parts = [f"{check.mapping}: {check.headline()}" for check in self.broken]
        parts += [f"{name}: not checked: {why}" for name, why in self.errors.items()]
        return (
            "; ".join(parts)
            or f"{len(self.checks)} mapping(s) checked: every synced row is in the other zone as in its source"
        )


@dataclass(frozen=True)
class ResyncResult:
    """Rows marked for the next sync (tasks/reconcile/repair.py)."""

    mapping: str
    marked: int  # flagged rows whose flag was set back to false
    already_pending: int  # selected rows whose flag was false already
    chunks: int
    seconds: float

    def headline(self) -> str:
        """One line: how many rows the next sync carries, and how many were waiting already."""
        return (f"{self.mapping}: {self.marked} row(s) marked for the next sync, {self.already_pending} pending "
                f"already ({self.seconds:.2f} s)")  # fmt: skip
