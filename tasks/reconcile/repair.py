"""Repair: rows marked for the next sync (`zonesync resync`), and what a reconciliation found resent
(`zonesync reconcile --repair`).

Marking a row is what the writers' contract asks of any writer that wants a row sent again: its flag set back to
false. It is done in chunks of keys, in key order, each in a transaction of its own, so that no lock is held on
more than a chunk and a concurrent sync meets only short waits. Only flagged rows are touched (a pending row is
counted, not written), and values never change, so a sync that read a row before it was marked sends the same
values: at worst a row goes twice, never a stale one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.reconcile.findings import Key, ResyncResult
from zonesync.tasks.reconcile.queries import ZoneView, key_in, zone_view
from zonesync.tasks.schema.catalog import source_table
from zonesync.tasks.zones.engines import dialect_for, in_transaction

CHUNK = 10_000  # keys marked per transaction


@dataclass(frozen=True)
class Selection:
    """Which source rows to mark: some keys (source column names' values, in key order), a key range (one key
    column, both ends included) or a business date."""

    keys: tuple[Key, ...] = ()
    key_range: tuple[Any, Any] | None = None
    business_date: date | None = None

    def __post_init__(self) -> None:
        given = sum((bool(self.keys), self.key_range is not None, self.business_date is not None))
        if given != 1:
            raise ConfigError("select the rows one way: keys, a key range or a business date")


def resync(
    mapping: SyncMapping, source: Engine, selection: Selection, *, timezone: str = "UTC", chunk: int = CHUNK
) -> ResyncResult:
    """Mark the selected rows of the mapping's source table for the next sync, chunk by chunk."""
    started = time.perf_counter()
    view = zone_view(mapping, "source", source_table(mapping, source), source, selection.business_date, timezone)
    if selection.business_date is not None and not mapping.business_date_column:
        raise ConfigError(f"mapping {mapping.name!r} has no business_date_column: select keys or a key range")
    if selection.key_range is not None and len(mapping.keys) != 1:
        raise ConfigError(f"mapping {mapping.name!r} has a key of {len(mapping.keys)} columns: select keys")
    keys = [view.column(name) for name in mapping.keys]
    flag = view.table.c[mapping.flag_column]
    synced = sa.not_(dialect_for(source).not_synced(flag))
    where = [*view.window, *_chosen(selection, keys)] + ([view.eligible] if view.eligible is not None else [])
    marked = chunks = 0
    after: Sequence[Any] | None = None
    while True:
        batch = _next_keys(view, keys, [*where, synced], after, chunk)
        if not batch:
            break
        marked += in_transaction(source, partial(_mark, view=view, keys=keys, synced=synced, batch=batch))
        chunks, after = chunks + 1, batch[-1]
    with source.connect() as conn:
        pending = int(conn.execute(sa.select(sa.func.count()).select_from(view.table).where(*where, sa.not_(synced)))
                      .scalar_one())  # fmt: skip
    return ResyncResult(mapping.name, marked, pending - marked, chunks, round(time.perf_counter() - started, 3))


def _chosen(selection: Selection, keys: list[sa.Column[Any]]) -> list[sa.ColumnElement[bool]]:
    if selection.keys:
        return [key_in(keys, selection.keys)]
    if selection.key_range is not None:
        low, high = selection.key_range
        return [keys[0] >= low, keys[0] <= high]
    return []  # a business date: the view's window


def _next_keys(view: ZoneView, keys: list[sa.Column[Any]], where: list[sa.ColumnElement[bool]],
               after: Sequence[Any] | None, chunk: int) -> list[Key]:  # fmt: skip
    """The next chunk of keys, in key order, after `after`."""
    query = sa.select(*keys).where(*where).order_by(*keys).limit(chunk)
    if after is not None:
        query = query.where(dialect_for(view.engine).keyset_after(keys, after))
    with view.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def _mark(conn: Connection, view: ZoneView, keys: list[sa.Column[Any]], synced: sa.ColumnElement[bool],
          batch: list[Key]) -> int:  # fmt: skip
    """Set the flag of the chunk's still-flagged rows back to false; how many."""
    flag = view.table.c[view.mapping.flag_column]
    statement = sa.update(view.table).where(key_in(keys, batch), synced).values({flag: sa.false()})
    return int(conn.execute(statement).rowcount)
