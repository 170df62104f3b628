"""End-day reconciliation of a mapping, computed in the databases.

Totals: row count and exact amount sums per `reconcile_by` group, by GROUP BY in each zone. Rows: like
data-diff, but independent of collations and engines: each database renders every mapped value as the same
canonical text (the dialects' reconciliation methods) and hashes each row and its key. Rows fall into buckets
by key hash; per-bucket count and row-hash sum are compared first, and only buckets that differ are fetched,
as (key, row hash) in bounded chunks, and diffed in polars. Memory stays bounded whatever the table size.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.deletes.tombstones import captures_deletes, count_pending
from zonesync.tasks.reconcile.findings import (
    Difference,
    GroupTotals,
    GroupValues,
    Key,
    Reconciliation,
    RowComparison,
)
from zonesync.tasks.reconcile.queries import (
    ZoneView,
    bucket_query,
    business_window,
    detail_query,
    totals_query,
    zone_view,
)
from zonesync.tasks.schema.catalog import source_table, target_table

# About 1,000 rows per bucket up to 4,096 buckets (4M rows), then more rows per bucket: a differing row costs
# the fetch of its bucket, and the aggregates stay a few thousand rows.
ROWS_PER_BUCKET = 1_000
MAX_BUCKETS = 4_096
CHUNK_ROWS = 100_000  # rows fetched per detail query and zone: the memory bound (~10 MB)
Bucket = tuple[int, int]  # rows, sum of 32-bit row-hash prefixes

__all__ = ["GroupTotals", "Reconciliation", "RowComparison", "business_window", "reconcile_mapping"]


def bucket_count(rows: int) -> int:
    """Buckets for a row count: about ROWS_PER_BUCKET rows each, at most MAX_BUCKETS."""
    return max(1, min(MAX_BUCKETS, -(-rows // ROWS_PER_BUCKET)))


def reconcile_mapping(
    mapping: SyncMapping,
    business_date: date | None,
    source: Engine,
    target: Engine,
    *,
    timezone: str = "UTC",
    list_limit: int = 50,
) -> Reconciliation:
    """Compare a mapping's zones for a business date (None, or no business_date_column: the whole table)."""
    started = time.perf_counter()
    window = business_date if mapping.business_date_column else None
    views = (
        zone_view(mapping, "source", source_table(mapping, source), source, window, timezone),
        zone_view(mapping, "target", target_table(mapping, target), target, window, timezone),
    )
    source_groups, target_groups = in_both(views, totals_query, "counting rows per group")
    groups = merge_groups(mapping, source_groups, target_groups)
    compared = (sum(g.source_rows for g in groups if g.expected), sum(g.target_rows for g in groups))
    comparison = compare_rows(*views, bucket_count(max(compared)), list_limit)
    groups = tuple(replace(g, differing_rows=comparison.different_in_groups.get(g.values, 0)) for g in groups)
    return Reconciliation(
        mapping=mapping.name,
        business_date=business_date if window else None,
        timezone=timezone,
        key_columns=mapping.keys,
        hidden_key_columns=frozenset(mapping.sensitive_columns),
        group_by=mapping.reconcile_by,
        amount_columns=mapping.amount_columns,
        groups=groups,
        comparison=comparison,
        list_limit=list_limit,
        seconds=round(time.perf_counter() - started, 3),
        pending_deletes=count_pending(source, mapping) if captures_deletes(source) else 0,
    )


# -- totals per group -----------------------------------------------------------------------------
def merge_groups(
    mapping: SyncMapping, source_rows: Sequence[Sequence[Any]], target_rows: Sequence[Sequence[Any]]
) -> tuple[GroupTotals, ...]:
    """Both zones' GROUP BY rows as one total per (group values, expected in the target)."""
    width = len(mapping.reconcile_by)
    dtypes = [next(c.dtype for c in mapping.columns if c.name == name) for name in mapping.amount_columns]
    found: dict[tuple[tuple[Any, ...], bool], dict[str, Any]] = {}
    for side, rows in (("source", source_rows), ("target", target_rows)):
        for row in rows:
            values, rest = tuple(row[:width]), list(row[width:])
            expected = bool(rest.pop(0)) if side == "source" and mapping.eligible else True
            entry = found.setdefault((values, expected), {})
            entry[side] = (
                int(rest[0]),
                tuple(_amount(value, dtype) for value, dtype in zip(rest[1:], dtypes, strict=True)),
            )
    zero = (0, tuple(_amount(None, dtype) for dtype in dtypes))
    groups = [
        GroupTotals(values, expected, *entry.get("source", zero), *entry.get("target", zero))
        for (values, expected), entry in found.items()
    ]
    return tuple(sorted(groups, key=lambda g: ([(v is None, str(v)) for v in g.values], not g.expected)))


def _amount(value: Any, dtype: pl.DataType) -> Decimal:
    """A database sum as an exact Decimal (decimals at their declared scale); no rows sum to zero."""
    number = Decimal(0) if value is None else Decimal(value if isinstance(value, int | Decimal) else str(value))
    return number.quantize(Decimal(1).scaleb(-dtype.scale)) if isinstance(dtype, pl.Decimal) and dtype.scale else number


# -- row comparison -------------------------------------------------------------------------------
@dataclass
class _Found:
    """Differences found so far: exact counts, keys up to the limit."""

    limit: int
    counts: dict[Difference, int] = field(default_factory=dict)
    keys: dict[Difference, list[Key]] = field(default_factory=dict)
    different_in: Counter[GroupValues] = field(default_factory=Counter)  # differing rows per group (both sides')

    def room(self, kind: Difference) -> int:
        return max(0, self.limit - len(self.keys.get(kind, [])))

    def add(self, kind: Difference, count: int, keys: Iterable[Key]) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + count
        self.keys.setdefault(kind, []).extend(itertools.islice(keys, self.room(kind)))

    def listed(self, kind: Difference) -> tuple[Key, ...]:
        return tuple(sorted(self.keys.get(kind, [])))  # one mapping's keys share their types: natural order


def compare_rows(source: ZoneView, target: ZoneView, buckets: int, list_limit: int) -> RowComparison:
    """Per-bucket aggregates first; rows (key, hash) only for the buckets that differ."""
    theirs, ours = (
        dict(_bucket_sums(rows)) for rows in in_both((source, target), bucket_query, "hashing rows", buckets)
    )
    found = _Found(list_limit)
    mismatched = sorted(b for b in theirs.keys() | ours.keys() if theirs.get(b) != ours.get(b))
    _count_alone(found, "missing_in_target", source, buckets, theirs, [b for b in mismatched if b not in ours])
    _count_alone(found, "only_in_target", target, buckets, ours, [b for b in mismatched if b not in theirs])
    for chunk in _chunks([b for b in mismatched if b in theirs and b in ours], theirs, ours):
        source_rows, target_rows = (
            view.fetch(detail_query(view, buckets, chunk), "diffing rows") for view in (source, target)
        )
        _diff_chunk(found, source, source_rows, target_rows)
    return RowComparison(
        source_rows=sum(count for count, _ in theirs.values()),
        target_rows=sum(count for count, _ in ours.values()),
        missing_in_target=found.counts.get("missing_in_target", 0),
        only_in_target=found.counts.get("only_in_target", 0),
        different=found.counts.get("different", 0),
        missing_in_target_keys=found.listed("missing_in_target"),
        only_in_target_keys=found.listed("only_in_target"),
        different_keys=found.listed("different"),
        buckets=buckets,
        fast_path=not mismatched,
        different_in_groups=dict(found.different_in),
    )


def _count_alone(
    found: _Found, kind: Difference, view: ZoneView, buckets: int, sums: dict[int, Bucket], alone: list[int]
) -> None:
    """Buckets with no row in the other zone: counted from the aggregates; keys listed up to the limit."""
    if alone:
        room = found.room(kind)
        keys = view.keys(detail_query(view, buckets, alone, limit=room)) if room else []
        found.add(kind, sum(sums[b][0] for b in alone), keys)


def in_both(
    views: tuple[ZoneView, ZoneView], query: Callable[..., sa.Select[Any]], what: str, *args: Any
) -> tuple[list[Sequence[Any]], list[Sequence[Any]]]:
    """Run a query in both zones at once (two servers: wall time halves); rows of each."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="zonesync-reconcile") as pool:
        source, target = (pool.submit(view.fetch, query(view, *args), what) for view in views)
        return source.result(), target.result()


def _bucket_sums(rows: Iterable[Sequence[Any]]) -> Iterator[tuple[int, Bucket]]:
    """(bucket, (rows, sum of row-hash prefixes)) of one zone."""
    for row in rows:
        yield int(row[0]), (int(row[1]), int(row[2]))


def _chunks(buckets: Sequence[int], *sums: dict[int, Bucket]) -> Iterator[list[int]]:
    """Buckets grouped so that each fetch returns at most about CHUNK_ROWS rows per zone."""
    chunk: list[int] = []
    size = 0
    for bucket in buckets:
        rows = max(zone[bucket][0] for zone in sums)
        if chunk and size + rows > CHUNK_ROWS:
            yield chunk
            chunk, size = [], 0
        chunk.append(bucket)
        size += rows
    if chunk:
        yield chunk


def _diff_chunk(
    found: _Found, view: ZoneView, source_rows: Sequence[Sequence[Any]], target_rows: Sequence[Sequence[Any]]
) -> None:
    """Diff one chunk of (key..., key hash, row hash) rows from both zones by key hash (keys: same types)."""
    frames = [
        pl.DataFrame(
            {"kh": [row[-2] for row in rows], "rh": [row[-1] for row in rows], "i": range(len(rows))},
            schema={"kh": pl.String, "rh": pl.String, "i": pl.Int64},
        )
        for rows in (source_rows, target_rows)
    ]
    source, target = frames
    paired = source.join(target, on="kh", suffix="_t")
    outcomes: list[tuple[Difference, pl.DataFrame, Sequence[Sequence[Any]]]] = [
        ("missing_in_target", source.join(target, on="kh", how="anti"), source_rows),
        ("only_in_target", target.join(source, on="kh", how="anti"), target_rows),
        ("different", paired.filter(pl.col("rh") != pl.col("rh_t")), source_rows),
    ]
    for kind, rows, origin in outcomes:
        indexes = rows.sort("kh")["i"].to_list()
        found.add(kind, len(indexes), (view.key(origin[i]) for i in indexes))
    keys, width = len(view.mapping.keys), len(view.mapping.reconcile_by)
    for i, j in paired.filter(pl.col("rh") != pl.col("rh_t")).select("i", "i_t").iter_rows():
        groups = {tuple(source_rows[i][keys : keys + width]), tuple(target_rows[j][keys : keys + width])}
        found.different_in.update(groups)  # a row whose group value changed differs in both groups
