"""The pure-database floor: stream `COPY ... TO STDOUT` from the source into `COPY ... FROM STDIN` on the
target (binary format, psycopg 3), then flag the source rows in one `UPDATE`.

`copy` loads straight into the target table (only possible when the target holds none of the keys: the
full sync into an empty table). `upsert` loads into a temporary table and applies one
`INSERT ... ON CONFLICT DO UPDATE` from it: the floor for the incremental case, where the rows exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from psycopg import sql

from bench.database import DatabasePair
from zonesync.schemas.mapping import SyncMapping

FloorMode = Literal["copy", "upsert"]
_STAGE = "bench_floor_stage"


@dataclass(frozen=True)
class FloorTiming:
    """Rows moved and where the time went."""

    rows: int
    flagged: int
    seconds: float
    transfer_seconds: float
    flag_seconds: float


def _pending(mapping: SyncMapping) -> sql.Composable:
    # The product's predicate (flag IS NOT TRUE): the same rows as `NOT is_sync` on this NOT NULL column,
    # and the one the recommended partial index serves, so the floor gets every advantage the product gets.
    return sql.SQL("{} IS NOT TRUE").format(sql.Identifier(mapping.flag_column))


def _copy_out(mapping: SyncMapping) -> sql.Composed:
    columns = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.Identifier(c.source), sql.Identifier(c.name)) for c in mapping.columns
    )
    return sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT (FORMAT BINARY)").format(
        columns, sql.Identifier(mapping.source_table), _pending(mapping)
    )


def _copy_in(table: str, mapping: SyncMapping) -> sql.Composed:
    columns = sql.SQL(", ").join(map(sql.Identifier, mapping.target_columns))
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), columns)


def _upsert_from_stage(mapping: SyncMapping) -> sql.Composed:
    columns = sql.SQL(", ").join(map(sql.Identifier, mapping.target_columns))
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
        for name in mapping.target_columns
        if name not in mapping.keys
    )
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO UPDATE SET {}").format(
        sql.Identifier(mapping.target_table),
        columns,
        columns,
        sql.Identifier(_STAGE),
        sql.SQL(", ").join(map(sql.Identifier, mapping.keys)),
        updates,
    )


def floor_sync(pair: DatabasePair, mapping: SyncMapping, mode: FloorMode) -> FloorTiming:
    """Move every unsynced row the fastest way PostgreSQL allows, then flag them; timed end to end."""
    started = time.perf_counter()
    with pair.connect(pair.source_db) as source, pair.connect(pair.target_db) as target:
        with source.cursor() as reader, target.cursor() as writer:
            if mode == "upsert":
                writer.execute(
                    sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
                        sql.Identifier(_STAGE), sql.Identifier(mapping.target_table)
                    )
                )
            into = _STAGE if mode == "upsert" else mapping.target_table
            with reader.copy(_copy_out(mapping)) as out, writer.copy(_copy_in(into, mapping)) as load:
                for block in out:
                    load.write(block)
            rows = writer.rowcount
            if mode == "upsert":
                writer.execute(_upsert_from_stage(mapping))
        target.commit()
        source.commit()
        transferred = time.perf_counter()
        flag = sql.Identifier(mapping.flag_column)
        flagged = source.execute(
            sql.SQL("UPDATE {} SET {} = true WHERE {}").format(
                sql.Identifier(mapping.source_table), flag, _pending(mapping)
            )
        ).rowcount
        source.commit()
    finished = time.perf_counter()
    return FloorTiming(rows, flagged, finished - started, transferred - started, finished - transferred)
