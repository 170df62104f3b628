"""What a reconciliation found (`Reconciliation`), as Markdown and as rows for a Prefect table artifact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from zonesync.schemas.mapping import HIDDEN

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

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready rows for a table artifact: one per group (kind 'totals'), one per listed differing key."""
        day = self.business_date.isoformat() if self.business_date else None
        base = {"mapping": self.mapping, "business_date": day}
        empty = {"group": None, "expected_to_match": None, "matches": None, "source_rows": None, "target_rows": None}
        empty |= {f"{zone}_{name}": None for name in self.amount_columns for zone in ("source", "target")}
        found = []
        for group in self.groups:
            totals = {"kind": "totals", **self._group_fields(group), "key": None}
            found.append(base | totals)
        for kind in DIFFERENCES:
            found += [base | {"kind": kind, **empty, "key": self.format_key(k)} for k in self.comparison.keys(kind)]
        return found

    def _group_fields(self, group: GroupTotals) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "group": self.format_group(group),
            "expected_to_match": group.expected,
            "matches": group.matches,
            "source_rows": group.source_rows,
            "target_rows": group.target_rows,
        }
        for name, source, target in zip(self.amount_columns, group.source_amounts, group.target_amounts, strict=True):
            fields[f"source_{name}"], fields[f"target_{name}"] = f"{source:f}", f"{target:f}"
        return fields

    def markdown(self) -> str:
        """A Markdown section: verdict, a totals table per group, the differing keys."""
        scope = f"{self.business_date} ({self.timezone})" if self.business_date else "all rows"
        verdict = "zones agree" if self.ok else "ZONES DIFFER"
        lines = [f"## Reconciliation of {self.mapping}: {scope}", "", f"**{verdict}**: {_escape(self.headline())}", ""]
        lines += self._totals_table()
        for kind, label in DIFFERENCES.items():
            keys, count = self.comparison.keys(kind), self.comparison.count(kind)
            if count:
                shown = "" if len(keys) == count else f" (first {len(keys)})"
                lines += ["", f"Keys {label}: {count}{shown}: " + ", ".join(_escape(self.format_key(k)) for k in keys)]
        return "\n".join(lines)

    def _totals_table(self) -> list[str]:
        """Short cells only (a source / target pair in one): Prefect's UI clips a table cell, it never wraps it."""
        header = [*(self.group_by or ("group",)), "eligible", "rows", *self.amount_columns, "match"]
        lines = [
            "Rows and amounts are source / target. *eligible*: the mapping syncs the group's rows, so the target must"
            " hold them all (and none of the others).",
            "",
            "| " + " | ".join(header) + " |",
            "|" + " --- |" * len(header),
        ]
        for group in self.groups:
            values = [("NULL" if v is None else v) for v in group.values] or ["all rows"]
            sums = [f"{s:f} / {t:f}" for s, t in zip(group.source_amounts, group.target_amounts, strict=True)]
            cells = [*map(_escape, values), "yes" if group.expected else "no"]
            cells += [f"{group.source_rows} / {group.target_rows}", *sums, "yes" if group.matches else "**NO**"]
            lines.append("| " + " | ".join(cells) + " |")
        return lines


def _escape(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return text.replace("|", "\\|").replace("\n", " ")
