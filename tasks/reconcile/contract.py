"""The writers' contract, checked from outside: a row its source flags synced must be in the other zone as the
source holds it. An application that changes a synced row without setting its flag back to false breaks the
contract: the retry never sends the change, and nothing else would say so (`zonesync init --triggers` enforces
the contract in the database; this check finds where it was broken).

1. **Scan.** The reconciliation's bucketed row hashes (`compare.compare_rows`), the source restricted to flagged
   rows: a flagged row missing from the target or different there is a suspect. Rows not flagged are the
   backlog, which the retry carries; a target row whose source is not flagged is not a suspect.
2. **Re-check** each suspect (up to a limit): its source row, then its target row, then its source row again.
   It is a break only if the source row held still, flagged, across the target's read while the target's copy
   differed. A row being synced while the scan ran is no break: the target receives a row before its flag
   commits, and a source row that changed in between is left to the next check.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.reconcile.compare import bucket_count, compare_rows, in_both
from zonesync.tasks.reconcile.findings import ContractCheck, Key
from zonesync.tasks.reconcile.queries import ZoneView, count_query, keyed_hashes, zone_view
from zonesync.tasks.schema.catalog import source_table, target_table
from zonesync.tasks.zones.engines import dialect_for

RECHECKED = 100  # suspects re-checked per mapping: the keys a report lists


def check_contract(mapping: SyncMapping, source: Engine, target: Engine, *, limit: int = RECHECKED) -> ContractCheck:
    """Flagged source rows against the target: the breaks of the writers' contract, re-checked."""
    started = time.perf_counter()
    everything = zone_view(mapping, "source", source_table(mapping, source), source, None, "UTC")
    flagged = replace(everything, window=(_synced(everything),))
    target_view = zone_view(mapping, "target", target_table(mapping, target), target, None, "UTC")
    counted = in_both((flagged, target_view), count_query, "counting rows")
    rows = max(int(found[0][0]) for found in counted)
    comparison = compare_rows(flagged, target_view, bucket_count(rows), limit)
    suspects = (*comparison.missing_in_target_keys, *comparison.different_keys)[:limit]
    broken = _recheck(everything, target_view, suspects) if suspects else ()
    return ContractCheck(
        mapping=mapping.name,
        flagged_rows=comparison.source_rows,
        suspected=comparison.missing_in_target + comparison.different,
        broken_keys=broken,
        rechecked=len(suspects),
        key_columns=mapping.keys,
        hidden_key_columns=frozenset(mapping.sensitive_columns),
        seconds=round(time.perf_counter() - started, 3),
    )


def _synced(view: ZoneView) -> sa.ColumnElement[bool]:
    """The source's rows flagged synced (as the dialect spells "not synced", negated)."""
    return sa.not_(dialect_for(view.engine).not_synced(view.table.c[view.mapping.flag_column]))


def _recheck(source: ZoneView, target: ZoneView, suspects: Sequence[Key]) -> tuple[Key, ...]:
    """The suspects whose source row stayed flagged and unchanged across the target's read, which differed."""
    flag = sa.case((_synced(source), 1), else_=0).label("synced")
    before = _by_key(source, source.fetch(keyed_hashes(source, suspects, flag), "re-checking suspects"))
    copies = _by_key(target, target.fetch(keyed_hashes(target, suspects), "re-checking suspects"))
    after = _by_key(source, source.fetch(keyed_hashes(source, suspects, flag), "re-checking suspects"))
    return tuple(
        key
        for key in sorted(suspects)
        if key in before
        and before[key] == after.get(key)
        and before[key][1] == 1
        and (copies.get(key) or (None,))[0] != before[key][0]
    )


def _by_key(view: ZoneView, rows: Sequence[Sequence[Any]]) -> dict[Key, tuple[Any, ...]]:
    """(row hash, extra...) by key."""
    width = len(view.mapping.keys)
    return {view.key(row): tuple(row[width:]) for row in rows}
