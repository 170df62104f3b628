"""The reconciliation's queries, built from the dialects' canonical-text and hash pieces (SQLAlchemy Core).

Every value is rendered as one canonical text per type, identical on PostgreSQL, MariaDB and SQLite
(integers in decimal, decimals at their declared scale, timestamps as the UTC wall clock with microseconds,
dates ISO, booleans '1'/'0', text as is). A row's text joins its fields with a control character, each field
prefixed '1' when present and '0' when NULL; its MD5 is the row hash, the MD5 of its key fields the key hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.dialects.reconciling import Reconciling
from zonesync.tasks.zones.engines import reconciling_for
from zonesync.tasks.zones.failures import translate

Role = Literal["source", "target"]


@dataclass(frozen=True)
class ZoneView:
    """One zone's side of a mapping: the rows of the business date (only eligible ones on the source side)."""

    mapping: SyncMapping
    role: Role
    engine: Engine
    reconciling: Reconciling
    table: sa.Table
    window: tuple[sa.ColumnElement[bool], ...]
    eligible: sa.ColumnElement[bool] | None

    @property
    def zone(self) -> str:
        """The zone's name."""
        return self.mapping.source_zone if self.role == "source" else self.mapping.target_zone

    def column(self, name: str) -> sa.Column[Any]:
        """This zone's column for a target column name."""
        return self.table.c[self.mapping.source_column(name) if self.role == "source" else name]

    def key(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """The key values leading a fetched row, as Python values of the model's types."""
        return tuple(
            _key_value(value, column.dtype) for value, column in zip(row, self.mapping.key_columns, strict=False)
        )

    def keys(self, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """The keys leading the rows of a (small) query."""
        return [self.key(row) for row in self.fetch(query, "listing keys")]

    def fetch(self, query: sa.Select[Any], what: str) -> list[Sequence[Any]]:
        """Run a query returning few rows; a driver error becomes a SyncError naming the zone."""
        try:
            with self.engine.connect() as conn:
                self.reconciling.prepare_reconcile(conn)
                return list(conn.execute(query))
        except sa.exc.SQLAlchemyError as exc:
            what = f"reconciliation ({what} of {self.table.name!r} in the {self.zone} zone)"
            raise translate(exc, what=what, mapping=self.mapping.name) from exc


def _key_value(value: Any, dtype: pl.DataType) -> Any:
    if dtype.is_integer():
        return int(value)
    if dtype == pl.Date and not isinstance(value, date):
        return date.fromisoformat(str(value))
    return value


def zone_view(
    mapping: SyncMapping, role: Role, table: sa.Table, engine: Engine, day: date | None, timezone: str
) -> ZoneView:
    """A zone's side of a mapping, restricted to a business date (None: the whole table)."""
    reconciling = reconciling_for(engine)
    view = ZoneView(mapping, role, engine, reconciling, table, (), None)
    eligible = None
    if role == "source" and mapping.eligible:
        eligible = sa.and_(*(table.c[name] == value for name, value in mapping.eligible.items()))
    return ZoneView(mapping, role, engine, reconciling, table, _window(view, day, timezone), eligible)


def _window(view: ZoneView, day: date | None, timezone: str) -> tuple[sa.ColumnElement[bool], ...]:
    """Rows of the business date: a date column equal to it, a timestamp within its instants."""
    name = view.mapping.business_date_column
    if day is None or name is None:
        return ()
    column, reconciling = view.column(name), view.reconciling
    if _dtype(view.mapping, name) == pl.Date:
        return (column == reconciling.date_bound(day),)
    start, end = business_window(day, timezone)
    return column >= reconciling.moment_bound(start, column), column < reconciling.moment_bound(end, column)


def business_window(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The UTC instants [day 00:00, day+1 00:00) in `timezone`."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _dtype(mapping: SyncMapping, name: str) -> pl.DataType:
    return next(column.dtype for column in mapping.columns if column.name == name)


def digest(view: ZoneView, names: Sequence[str]) -> sa.ColumnElement[str]:
    """MD5 of the canonical text of some (target-named) columns."""
    texts = [view.reconciling.canonical_text(view.column(name), _dtype(view.mapping, name)) for name in names]
    return view.reconciling.md5(view.reconciling.row_text(texts))


def _rows(view: ZoneView, *columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """SELECT columns FROM the zone's table WHERE the rows are of the business date (and eligible)."""
    query = sa.select(*columns).select_from(view.table).where(*view.window)
    return query if view.eligible is None else query.where(view.eligible)


def totals_query(view: ZoneView) -> sa.Select[Any]:
    """Group values (canonical text), [eligible,] row count and exact sums, per group of the date's rows.

    Unlike the row comparison this counts the source's ineligible rows too, under eligible = false.
    """
    mapping = view.mapping
    columns = _group_texts(view)
    if view.eligible is not None:
        columns.append(sa.case((view.eligible, sa.true()), else_=sa.false()).label("eligible"))
    columns += [view.column(name).label(f"a{i}") for i, name in enumerate(mapping.amount_columns)]
    query = sa.select(*(columns or [sa.literal(1).label("one")])).select_from(view.table).where(*view.window)
    dated = query.subquery("dated")
    group = [column for column in dated.c if column.name.startswith("g") or column.name == "eligible"]
    sums = [
        view.reconciling.exact_sum(dated.c[f"a{i}"], _dtype(mapping, name)).label(f"s{i}")
        for i, name in enumerate(mapping.amount_columns)
    ]
    return sa.select(*group, sa.func.count().label("rows"), *sums).select_from(dated).group_by(*group)


def _group_texts(view: ZoneView) -> list[sa.ColumnElement[Any]]:
    """The canonical text of each `reconcile_by` column, labelled g0.. (as the totals group them)."""
    mapping = view.mapping
    return [
        view.reconciling.canonical_text(view.column(name), _dtype(mapping, name)).label(f"g{i}")
        for i, name in enumerate(mapping.reconcile_by)
    ]


def hashed_rows(view: ZoneView) -> sa.Subquery:
    """Key columns k0.., group texts g0.., key hash `kh` and row hash `rh` (over every mapped column) of the
    compared rows."""
    mapping = view.mapping
    keys = [view.column(name).label(f"k{i}") for i, name in enumerate(mapping.keys)]
    hashes = digest(view, mapping.keys).label("kh"), digest(view, mapping.target_columns).label("rh")
    return _rows(view, *keys, *_group_texts(view), *hashes).subquery("hashed")


def bucket_query(view: ZoneView, buckets: int) -> sa.Select[Any]:
    """Per bucket of key hash: row count and the sum of 32-bit row-hash prefixes."""
    hashed = hashed_rows(view)
    parts = sa.select(
        (view.reconciling.hash32(hashed.c.kh) % buckets).label("bucket"),
        view.reconciling.hash32(hashed.c.rh).label("part"),
    ).subquery("parts")
    return sa.select(parts.c.bucket, sa.func.count(), sa.func.sum(parts.c.part)).group_by(parts.c.bucket)


def detail_query(view: ZoneView, buckets: int, selected: Sequence[int], *, limit: int | None = None) -> sa.Select[Any]:
    """(key columns..., group texts..., kh, rh) of the rows in some buckets (the first `limit` by key hash)."""
    hashed = hashed_rows(view)
    leading = [c for c in hashed.c if c.name.startswith(("k", "g")) and c.name != "kh"]
    query = sa.select(*leading, hashed.c.kh, hashed.c.rh)
    if buckets > 1:
        query = query.where((view.reconciling.hash32(hashed.c.kh) % buckets).in_(list(selected)))
    return query if limit is None else query.order_by(hashed.c.kh).limit(limit)


def count_query(view: ZoneView) -> sa.Select[Any]:
    """How many rows the view compares."""
    return _rows(view, sa.func.count())


def key_in(columns: Sequence[sa.ColumnElement[Any]], keys: Sequence[tuple[Any, ...]]) -> sa.ColumnElement[bool]:
    """The rows with these keys (a one-column key as a plain IN, which every database indexes)."""
    if len(columns) == 1:
        return columns[0].in_([key[0] for key in keys])
    return sa.tuple_(*columns).in_(list(keys))


def keyed_hashes(view: ZoneView, keys: Sequence[tuple[Any, ...]], *extra: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """(key columns..., rh, extra...) of the rows with these keys, whatever the view's window: a re-check of a few."""
    columns = [view.column(name) for name in view.mapping.keys]
    query = sa.select(*columns, digest(view, view.mapping.target_columns).label("rh"), *extra).select_from(view.table)
    return query.where(key_in(columns, keys))
