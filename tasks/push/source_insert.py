"""A push's source insert: the records inserted in one transaction and returned exactly as stored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.push.already_there import instant, key_in
from zonesync.tasks.sync.extract import UnsyncedReader
from zonesync.tasks.zones.engines import in_transaction
from zonesync.tasks.zones.failures import translate

_READ_BACK_CHUNK = 1000  # keys per SELECT when inserted rows are read back


def insert_returning(
    dialect: Dialect, statement: sa.Insert, rows: list[dict[str, Any]], reader: UnsyncedReader, bind: Connection,
    verify: Callable[[Connection], None],
) -> pl.DataFrame:  # fmt: skip
    """INSERT the rows in one transaction with `statement` (`Pusher.insert`), returning them as stored and in the
    order given (read the way the retry sync reads); `verify` runs before the commit (the table is as reflected)."""

    def insert(conn: Connection) -> list[Sequence[Any]]:
        stored: list[Sequence[Any]] = [()] * len(rows)
        for positions in _by_column_set(rows):
            inserted = _inserted(conn, dialect, statement, [rows[position] for position in positions], reader)
            for position, row in zip(positions, inserted, strict=True):
                stored[position] = row
        verify(conn)
        return stored

    try:
        stored = in_transaction(bind, insert)
    except Exception as exc:
        raise translate(exc, what=f"insert into {reader.table.name!r}", mapping=reader.mapping.name) from exc
    return dialect.frame_from_rows(stored, reader.dtypes)


def _inserted(
    conn: Connection, dialect: Dialect, statement: sa.Insert, rows: list[dict[str, Any]], reader: UnsyncedReader
) -> Sequence[Sequence[Any]]:
    """INSERT rows that set the same columns; the rows as stored, in the order given: RETURNING them, or read
    back by key in the same transaction where RETURNING would need SELECT of a column zonesync may not read
    (MariaDB checks every inserted column; the generated grants give only the carried ones)."""
    if not dialect.returning_reads_inserted_columns or set(rows[0]) <= set(reader.mapping.carried_source_columns):
        return conn.execute(statement, rows).all()
    conn.execute(sa.insert(reader.table), rows)
    names = reader.mapping.source_keys
    read = reader.select()
    width = len(read.selected_columns)
    query = read.add_columns(*(reader.table.c[name] for name in names))
    keys = [tuple(row[name] for name in names) for row in rows]
    found: dict[tuple[Any, ...], Sequence[Any]] = {}
    for start in range(0, len(keys), _READ_BACK_CHUNK):
        chunk = keys[start : start + _READ_BACK_CHUNK]
        for row in conn.execute(query.where(key_in(reader.table, names, chunk))):
            found[_instants(tuple(row[width:]))] = tuple(row[:width])
    return [found[_instants(key)] for key in keys]


def _instants(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """A key as it compares (and hashes) with the stored one: a timestamp by its instant."""
    return tuple(instant(value) if isinstance(value, datetime) else value for value in key)


def _by_column_set(rows: list[dict[str, Any]]) -> list[list[int]]:
    """Positions of the rows grouped by the columns they set (an executemany needs one shape), first-seen order."""
    groups: dict[frozenset[str], list[int]] = {}
    for position, row in enumerate(rows):
        groups.setdefault(frozenset(row), []).append(position)
    return list(groups.values())
