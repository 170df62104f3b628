"""What a reconciliation found (`results.Reconciliation`), as Markdown and as rows for a Prefect table artifact."""

from __future__ import annotations

from typing import Any

from zonesync.tasks.reconcile.findings import DIFFERENCES, ContractReport, GroupTotals, Reconciliation

_KEYS_SHOWN = 50  # keys listed per mapping in a contract summary


def reconciliation_rows(found: Reconciliation) -> list[dict[str, Any]]:
    """JSON-ready rows for a table artifact: one per group (kind 'totals'), one per listed differing key."""
    day = found.business_date.isoformat() if found.business_date else None
    base = {"mapping": found.mapping, "business_date": day}
    empty = {"group": None, "expected_to_match": None, "matches": None, "source_rows": None, "target_rows": None}
    empty |= {f"{zone}_{name}": None for name in found.amount_columns for zone in ("source", "target")}
    rows = []
    for group in found.groups:
        totals = {"kind": "totals", **_group_fields(found, group), "key": None}
        rows.append(base | totals)
    for kind in DIFFERENCES:
        rows += [base | {"kind": kind, **empty, "key": found.format_key(k)} for k in found.comparison.keys(kind)]
    return rows


def _group_fields(found: Reconciliation, group: GroupTotals) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "group": found.format_group(group),
        "expected_to_match": group.expected,
        "matches": group.matches,
        "differing_rows": group.differing_rows,
        "source_rows": group.source_rows,
        "target_rows": group.target_rows,
    }
    for name, source, target in zip(found.amount_columns, group.source_amounts, group.target_amounts, strict=True):
        fields[f"source_{name}"], fields[f"target_{name}"] = f"{source:f}", f"{target:f}"
    return fields


def reconciliation_markdown(found: Reconciliation) -> str:
    """A Markdown section: verdict, a totals table per group, the differing keys."""
    scope = f"{found.business_date} ({found.timezone})" if found.business_date else "all rows"
    verdict = "zones agree" if found.ok else "ZONES DIFFER"
    headline = _escape(found.headline())
    lines = [f"## Reconciliation of {found.mapping}: {scope}", "", f"**{verdict}**: {headline}", ""]
    lines += _totals_table(found)
    for kind, label in DIFFERENCES.items():
        keys, count = found.comparison.keys(kind), found.comparison.count(kind)
        if count:
            shown = "" if len(keys) == count else f" (first {len(keys)})"
            lines += ["", f"Keys {label}: {count}{shown}: " + ", ".join(_escape(found.format_key(k)) for k in keys)]
    return "\n".join(lines)


def _totals_table(found: Reconciliation) -> list[str]:
    """Short cells only (a source / target pair in one): Prefect's UI clips a table cell, it never wraps it."""
    header = [*(found.group_by or ("group",)), "eligible", "rows", *found.amount_columns, "match"]
    lines = [
        "Rows and amounts are source / target. *eligible*: the mapping syncs the group's rows, so the target must"
        " hold them all (and none of the others).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for group in found.groups:
        values = [("NULL" if v is None else v) for v in group.values] or ["all rows"]
        sums = [f"{s:f} / {t:f}" for s, t in zip(group.source_amounts, group.target_amounts, strict=True)]
        cells = [*map(_escape, values), "yes" if group.expected else "no"]
        differ = f" ({group.differing_rows} rows differ)" if group.differing_rows else ""
        cells += [f"{group.source_rows} / {group.target_rows}", *sums, "yes" if group.matches else f"**NO**{differ}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _escape(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return text.replace("|", "\\|").replace("\n", " ")


def contract_markdown(report: ContractReport) -> str:
    """The scheduled reconciliation's summary: per mapping, the verdict and the keys of the rows that broke the
    writers' contract, with what to do about them."""
    lines = ["# Reconciliation of the synced rows", ""]
    for check in report.checks:
        verdict = "in step" if check.ok else "**CONTRACT BROKEN**"
        lines += [f"## {check.mapping}: {verdict}", "", _escape(check.headline()) + f" ({check.seconds:.2f} s)", ""]
        if check.broken_keys:
            shown = ", ".join(_escape(check.format_key(key)) for key in check.broken_keys[:_KEYS_SHOWN])
            more = f" and {len(check.broken_keys) - _KEYS_SHOWN} more" if len(check.broken_keys) > _KEYS_SHOWN else ""
            lines += [f"Keys: {shown}{more}", ""]
    for name, why in report.errors.items():
        lines += [f"## {name}: not checked", "", _escape(why), ""]
    if report.broken:
        lines += [
            "An application changed these rows without setting the flag back to false, so the retry never sends "
            "them. `zonesync init --triggers` makes the database do it for every writer; to send these rows now, "
            "set their flag to false.",
        ]
    return "\n".join(lines).rstrip() + "\n"
