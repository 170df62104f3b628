"""Records sent again: a push refused for a duplicate key whose records are each either new or identical to the
row their key holds in the source table (a client that timed out and retried, or a retried batch of which some
records had landed). Those records are answered as already there, per record, so that one landed record never
sinks its neighbours; a record that differs from the stored row still refuses the request whole (409).

Identical means: every column the record sets holds the value it would be stored as (values compared after the
same coercion the insert binds, decimals by value, instants by instant; texts exactly, whatever the collation).
A comparison that cannot tell says different: the caller then gets the 409 it got before. That includes a record
that sets a column the mapping does not carry (`tax_id` in the demo): zonesync never reads such a column back,
so it cannot tell a retry from a correction sent by mistake as a push. An `Idempotency-Key` makes any request
safe to send again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.zones.engines import in_transaction

Key = tuple[Any, ...]


@dataclass
class SentAgain:
    """The positions of a request's records: new ones, ones stored identically and synced, and ones stored
    identically but not synced yet (pending: the cron retry carries them, as it would have the first time)."""

    new: list[int] = field(default_factory=list)
    synced: list[int] = field(default_factory=list)
    unsynced: list[int] = field(default_factory=list)


def sent_again(
    conn: Connection, table: sa.Table, mapping: SyncMapping, rows: Sequence[dict[str, Any]]
) -> SentAgain | None:
    """How the request's coerced `rows` stand against the source table; None when a record's key holds other
    values (or no record is stored at all: the duplicate is on another unique column)."""
    carried = set(mapping.carried_source_columns)
    if any(name not in carried for row in rows for name in row):
        return None  # a column zonesync may not read back: it cannot tell (see the module docstring)
    stored = _stored(conn, table, mapping, rows)
    found = SentAgain()
    for position, row in enumerate(rows):
        held = stored.get(_key(row, mapping))
        if held is None:
            found.new.append(position)
        elif not all(_same(value, held[name]) for name, value in row.items() if name != mapping.flag_column):
            return None
        else:
            (found.synced if held[mapping.flag_column] else found.unsynced).append(position)
    return found if found.synced or found.unsynced else None


def _stored(conn: Connection, table: sa.Table, mapping: SyncMapping, rows: Sequence[dict[str, Any]]) -> dict[Key, Any]:
    """The stored values of the columns the records set, by key."""
    names = sorted({name for row in rows for name in row} | set(mapping.source_keys) | {mapping.flag_column})
    keys = [_key(row, mapping) for row in rows]
    query = sa.select(*(table.c[name] for name in names)).where(key_in(table, mapping.source_keys, keys))
    found = in_transaction(conn, lambda c: [row._mapping for row in c.execute(query)])
    return {_key(row, mapping): row for row in found}


def key_in(table: sa.Table, names: Sequence[str], keys: Sequence[Key]) -> sa.ColumnElement[bool]:
    """Rows whose key columns `names` hold one of `keys`."""
    columns = [table.c[name] for name in names]
    if len(columns) == 1:
        return columns[0].in_([key[0] for key in keys])
    return sa.tuple_(*columns).in_(keys)


def _key(row: Any, mapping: SyncMapping) -> Key:
    return tuple(row[name] for name in mapping.source_keys)


def _same(sent: Any, stored: Any) -> bool:
    """Whether the value the insert would bind equals the stored one (see the module docstring)."""
    if sent is None or stored is None:
        return sent is None and stored is None
    if isinstance(sent, datetime) and isinstance(stored, datetime):
        return instant(sent) == instant(stored)
    if isinstance(sent, bool) or isinstance(stored, bool):
        return isinstance(stored, bool | int) and isinstance(sent, bool | int) and bool(sent) == bool(stored)
    return type(sent) is type(stored) and sent == stored


def instant(moment: datetime) -> datetime:
    """A naive timestamp read from a column without a zone holds UTC (the zones' clock)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
