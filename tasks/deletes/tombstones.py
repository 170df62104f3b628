"""Tombstones as the carrier reads and settles them: pending ones in id order, decoded into typed keys.

The delete-capture trigger (`zonesync init --triggers`) writes them in the source table's own database; each
holds the key (JSON), the deleted row's version (text) and when. Decoding turns them into the mapping's target
key columns and version type, the way a read batch is cast (`tasks/sync/transform.py`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.model_columns import TargetColumn
from zonesync.tasks.bookkeeping.tables import sync_tombstone
from zonesync.tasks.sync.transform import to_target_schema

# What carrying a tombstone did (sync_tombstone.outcome): the first four flag it, the refusals leave it pending
# (quarantined, tried again by the next run, like a refused row).
Outcome = Literal["applied", "absent", "superseded", "skipped", "conflict", "kept"]
DONE: tuple[Outcome, ...] = ("applied", "absent", "superseded", "skipped")
REFUSED: tuple[Outcome, ...] = ("conflict", "kept")
TOMBSTONE = "zs_tombstone"  # a decoded tombstone's id column
DELETED_AT = "zs_deleted_at"
VERSION = "zs_version"
_CLAIMED = "claimed"  # within a claim's transaction only: settling replaces it before the commit
_CHUNK = 10_000  # ids per statement (SQLite binds at most 32,766 values)

_captured: weakref.WeakSet[Engine] = weakref.WeakSet()  # databases known to hold sync_tombstone


def captures_deletes(engine: Engine) -> bool:
    """Whether this database holds the tombstone table (`zonesync init --triggers` created it). Listed, not looked
    up: MariaDB answers a lookup of a table the role holds no privilege on with an error, existing or not."""
    if engine not in _captured and sync_tombstone.name in sa.inspect(engine).get_table_names():
        _captured.add(engine)
    return engine in _captured


def pending_query(
    mapping: SyncMapping, after: int | None, limit: int | None
) -> sa.Select[tuple[int, str, str, object]]:
    """The next pending tombstones of a mapping, in the order they were recorded."""
    t = sync_tombstone.c
    query = sa.select(t.id, t.record_key, t.version, t.deleted_at).where(t.mapping == mapping.name, ~t.is_sync)
    if after is not None:
        query = query.where(t.id > after)
    return query.order_by(t.id).limit(limit)


def count_pending(engine: Engine, mapping: SyncMapping) -> int:
    """How many tombstones of a mapping wait to be carried."""
    t = sync_tombstone.c
    query = sa.select(sa.func.count()).where(t.mapping == mapping.name, ~t.is_sync)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def read_pending(engine: Engine, mapping: SyncMapping, after: int | None, limit: int) -> pl.DataFrame:
    """One batch of pending tombstones, decoded (see `decode`)."""
    with engine.connect() as conn:
        rows = conn.execute(pending_query(mapping, after, limit)).all()
    return decode(mapping, rows)


def decode(mapping: SyncMapping, rows: Sequence[Sequence[object]]) -> pl.DataFrame:
    """ROW (the position in the batch), the key columns (target names and types), VERSION (the target's version
    type, where the target has the version column), TOMBSTONE and DELETED_AT (UTC)."""
    as_read = pl.Series("key", [key for _id, key, _version, _at in rows], dtype=pl.String)
    fields = {c.source: pl.Int64 if c.dtype.is_integer() else pl.String for c in mapping.key_columns}
    raw = as_read.str.json_decode(pl.Struct(fields)).struct.unnest()  # polars parses: ~10x json.loads per row
    version = mapping.target_version
    if version is not None:
        texts = [None if v is None else str(v) for _id, _key, v, _at in rows]
        raw = raw.with_columns(pl.Series(version.source, texts, dtype=pl.String))
    deleted = pl.Series(DELETED_AT, [at for *_rest, at in rows], dtype=pl.Datetime("us")).dt.replace_time_zone("UTC")
    ids = pl.Series(TOMBSTONE, [tombstone for tombstone, *_rest in rows], dtype=pl.Int64)
    return _cast(raw, mapping, version).with_columns(ids, deleted)


def _cast(raw: pl.DataFrame, mapping: SyncMapping, version: TargetColumn | None) -> pl.DataFrame:
    """The key (and version) columns cast to the model's types, renamed to the target's names."""
    columns = [*mapping.key_columns, *([version] if version is not None else [])]
    narrowed = _Narrowed(mapping, tuple(columns))
    shaped = to_target_schema(raw, narrowed)  # type: ignore[arg-type]
    frame = shaped.frame
    if version is not None:
        frame = frame.rename({version.name: VERSION})
    return frame


class _Narrowed:
    """A mapping seen through some of its columns only (what `to_target_schema` reads of it)."""

    def __init__(self, mapping: SyncMapping, columns: tuple[TargetColumn, ...]) -> None:
        self.name, self.columns = mapping.name, columns


@dataclass(frozen=True)
class Claimed:
    """A batch's tombstones held by the claim's transaction, and what the claim wrote into them: the outcome the
    batch is expected to have (where the claim returns what it took: settling then rewrites only the exceptions), or
    the `claimed` mark (elsewhere: settling replaces it)."""

    ids: list[int]
    written: str


def claims_exactly(engine: Engine) -> bool:
    """Whether a claim flags exactly the tombstones it returns (UPDATE ... RETURNING), so that two claims of
    different batches never wait on each other. Elsewhere (MariaDB) a claim marks its range, then reads the marks,
    and its range locks could wait on the next batch's."""
    return bool(engine.dialect.update_returning)


def claim(conn: Connection, mapping: SyncMapping, ids: Sequence[int], *, expected: Outcome) -> Claimed:
    """Hold a batch of pending tombstones (read in id order) in the caller's transaction, flagged: an insert of the
    same key waits (its trigger would supersede them), and one superseded meanwhile is not taken."""
    if not ids:
        return Claimed([], _CLAIMED)
    t = sync_tombstone.c
    in_range = [t.mapping == mapping.name, t.id.between(min(ids), max(ids)), ~t.is_sync]
    if claims_exactly(conn.engine):  # one write per tombstone; measured: half the time of a lock, then a flag
        flag = sa.update(sync_tombstone).where(*in_range).values(is_sync=True, outcome=expected).returning(t.id)
        taken, written = set(conn.execute(flag).scalars()), str(expected)
    else:
        conn.execute(sa.update(sync_tombstone).where(*in_range).values(is_sync=True, outcome=_CLAIMED))
        marked = sa.select(t.id).where(*in_range[:2], t.outcome == _CLAIMED)
        taken, written = set(conn.execute(marked).scalars()), _CLAIMED
    unread = sorted(taken.difference(ids))  # committed inside the range after the read: for the next batch
    for start in range(0, len(unread), _CHUNK):
        chunk = unread[start : start + _CHUNK]
        conn.execute(sa.update(sync_tombstone).where(t.id.in_(chunk)).values(is_sync=False, outcome=None))
    return Claimed(sorted(taken.intersection(ids)), written)


def settle(conn: Connection, mapping: SyncMapping, outcomes: pl.DataFrame, claimed: Claimed) -> None:
    """Record each claimed tombstone's outcome (TOMBSTONE, outcome): done ones stay flagged, refused ones go back.
    The outcome the claim wrote stays; where it wrote the mark, the usual outcome replaces it in one statement over
    the batch's id range. The others go by id."""
    if outcomes.is_empty():
        return
    t = sync_tombstone.c
    groups = {outcome: group[TOMBSTONE].to_list() for (outcome,), group in outcomes.group_by("outcome")}
    usual = claimed.written
    if usual == _CLAIMED:
        usual = max(groups, key=lambda outcome: len(groups[outcome]))
        in_range = [t.mapping == mapping.name, t.id.between(min(claimed.ids), max(claimed.ids))]
        marked = sa.update(sync_tombstone).where(*in_range, t.outcome == _CLAIMED)
        conn.execute(marked.values(outcome=usual, is_sync=usual in DONE))
    for outcome, ids in groups.items():
        for start in range(0, len(ids) if outcome != usual else 0, _CHUNK):
            chunk = ids[start : start + _CHUNK]
            conn.execute(
                sa.update(sync_tombstone).where(t.id.in_(chunk)).values(outcome=outcome, is_sync=outcome in DONE)
            )
