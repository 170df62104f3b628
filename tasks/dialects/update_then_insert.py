"""Upserts for a database whose INSERT cannot be told which key a conflict is about (MariaDB and MySQL: ON
DUPLICATE KEY UPDATE fires on *any* unique index). A database module takes it by listing `UpdateThenInsert`
before `Dialect` among its bases."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.schemas.errors import KeyCollision
from zonesync.tasks.dialects.writing import Writes

SameValue = Callable[[sa.ColumnElement, sa.ColumnElement], sa.ColumnElement[bool]]


class UpdateThenInsert(Writes):
    """UPDATE the keys that exist (a join), then INSERT the ones that do not (an anti-join)."""

    def upsert(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> int:
        """UPDATE the keys that exist (a join), then INSERT the ones that do not (an anti-join).

        Not ON DUPLICATE KEY UPDATE: it fires on *any* unique index, so a row clashing with another row's
        unique column would silently overwrite that other row. These two statements raise instead, and the
        clashing row is isolated and quarantined. A few rows (a push) are joined as a derived table of bound
        values; more are bulk-loaded into a temporary table (creating one costs milliseconds).
        """
        if frame.height <= self.small_batch:
            rows: sa.Table | sa.Subquery = bound_rows(target, self.encode(frame))
        else:
            rows = self.load_temp(conn, "zonesync_upsert", target, frame)
        if any(isinstance(target.c[key].type, sa.String) for key in keys):
            refuse_key_collisions(conn, target, rows, keys, self.same_value)
        changed = sum(int(conn.execute(s).rowcount) for s in update_then_insert(target, rows, keys, self.same_value))
        if isinstance(rows, sa.Table):
            rows.drop(conn)
        return changed


def bound_rows(target: sa.Table, frame: pl.DataFrame) -> sa.Subquery:
    """The rows as a derived table: a SELECT of bound values per row, UNION ALL."""
    rows = [
        sa.select(*(sa.literal(value, target.c[name].type).label(name) for name, value in row.items()))
        for row in frame.iter_rows(named=True)
    ]
    return (sa.union_all(*rows) if len(rows) > 1 else rows[0]).subquery("zonesync_rows")


def refuse_key_collisions(
    conn: Connection, target: sa.Table, rows: sa.Table | sa.Subquery, keys: Sequence[str], same: SameValue
) -> None:
    """Raise KeyCollision when a row's key finds a stored key that its collation calls equal but whose bytes
    differ ('k' and 'k ', 'K'): the join on the key would overwrite that other row. (Rows of one batch that
    collide with each other fail the INSERT on the unique key; split apart, they meet here.)"""
    collision = (
        sa.select(*(rows.c[key] for key in keys), *(target.c[key].label(f"stored_{key}") for key in keys))
        .join(target, sa.and_(*(target.c[key] == rows.c[key] for key in keys)))
        .where(sa.not_(sa.and_(*(same(target.c[key], rows.c[key]) for key in keys))))
        .limit(1)
    )
    found = conn.execute(collision).first()
    if found is not None:
        sent, stored = found[: len(keys)], found[len(keys) :]
        raise KeyCollision(
            f"the target's collation does not tell key {tuple(sent)!r} from the stored key {tuple(stored)!r} "
            "(trailing blanks, letter case): it cannot hold both"
        )


def update_then_insert(
    target: sa.Table, rows: sa.Table | sa.Subquery, keys: Sequence[str], same: SameValue
) -> list[sa.Executable]:
    """UPDATE the target rows whose key is among `rows` and that differ (`same`: exact equality), then INSERT the
    `rows` whose key the target lacks: their row counts add up to the rows inserted or changed."""
    same_key = [target.c[key] == rows.c[key] for key in keys]
    updates = {column.name: column for column in rows.columns if column.name not in keys}
    new_rows = sa.select(*rows.columns).where(~sa.exists().where(*same_key))
    insert = sa.insert(target).from_select([column.name for column in rows.columns], new_rows)
    if not updates:
        return [insert]
    differs = sa.or_(*(sa.not_(same(target.c[name], column)) for name, column in updates.items()))
    return [sa.update(target).where(*same_key, differs).values(updates), insert]
