"""The least privileges zonesync needs in each zone, as GRANT statements (`zonesync grants`), for two roles:
the flows (`flows`: every flow, the command line, `recover`) and the HTTP API (`api`: a push and an update).
`zonesync init` (which creates tables and triggers) runs as the tables' owner.

Both roles read and change only the columns a mapping carries (`SyncMapping.carried_source_columns`; on the
target side, the model's columns). The source table's other columns (`tax_id`, `client_ip` in the demo) stay
in their zone: a push INSERTs them with its records, and neither role may SELECT or UPDATE them.

What each table needs, and why:

- a mapping's source table: INSERT (the push), SELECT of the carried columns (reads of unsynced rows, the rows
  a push inserted, the update's before-image), UPDATE of the carried non-key columns (the flag, the update);
- a mapping's target table: INSERT, SELECT and UPDATE of the model's non-key columns (the upsert and its
  conflict check, the update's target row, reconciliation);
- the flows, in the intranet zone: batch_job, sync_error, sync_intent, sync_schema: SELECT, INSERT, UPDATE
  (the ledger, the quarantine, update intents, the accepted shapes); sync_lease: DELETE too (leases are given
  back); api_audit: SELECT (`zonesync audit`);
- the API, in the intranet zone: no batch_job (its writes are not scheduled jobs); sync_schema: SELECT, INSERT
  and UPDATE of broken_at only (it records a first shape and a break; the scheduled runs and operators accept
  changes);
  sync_error: SELECT, INSERT, and UPDATE of reason, detail, last_seen and attempts only: it records failures
  but can neither resolve nor reopen one (the cron retry, which carries the record again, does). MariaDB checks
  UPDATE of every column an INSERT ... ON DUPLICATE KEY UPDATE inserts, so there the role also holds UPDATE of
  the other columns a quarantine inserts (never resolved_at). sync_intent, sync_lease: as the flows; api_audit:
  INSERT only (operators read the trail); api_idempotency: SELECT, INSERT, UPDATE, DELETE (answers kept for a
  retention, then forgotten);
- the flows, for deletes (`tasks/deletes/`): `sync_tombstone`, where a source zone has it: SELECT, UPDATE
  (claimed and settled); a target table: DELETE (`hard`, `archive`), SELECT and UPDATE of the deleted marker
  (`soft`); the archive table, once it exists: INSERT, and DELETE (the copy of a delete rolled back by recovery);
- each zone's database: temporary tables (bulk loads go through them) and the sequences behind generated ids.

Two-phase commit needs nothing more: a role commits or rolls back the transactions it prepared itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.settings import Zone
from zonesync.tasks.bookkeeping import tables as bookkeeping
from zonesync.tasks.bookkeeping.quarantine import QUARANTINE_INSERTS
from zonesync.tasks.deletes.tombstones import captures_deletes
from zonesync.tasks.dialects.installing import TableGrant
from zonesync.tasks.schema.catalog import reflect_table, source_table, target_table
from zonesync.tasks.zones.engines import installing_for

Part = Literal["flows", "api"]
PARTS: tuple[Part, ...] = ("flows", "api")

_ERROR_UPDATES = ("reason", "detail", "last_seen", "attempts")  # never resolved_at: resolving is the flows'
_BOOKKEEPING: dict[Part, dict[str, tuple[str, ...]]] = {
    "flows": {
        "batch_job": ("SELECT", "INSERT", "UPDATE"),
        "sync_error": ("SELECT", "INSERT", "UPDATE"),
        "sync_intent": ("SELECT", "INSERT", "UPDATE"),
        "sync_lease": ("SELECT", "INSERT", "UPDATE", "DELETE"),
        "sync_schema": ("SELECT", "INSERT", "UPDATE"),
        "api_audit": ("SELECT",),
    },
    "api": {
        "sync_error": ("SELECT", "INSERT"),
        "sync_intent": ("SELECT", "INSERT", "UPDATE"),
        "sync_lease": ("SELECT", "INSERT", "UPDATE", "DELETE"),
        "sync_schema": ("SELECT", "INSERT"),
        "api_audit": ("INSERT",),
        "api_idempotency": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    },
}


def zone_grants(zone: Zone, engine: Engine, mappings: Iterable[SyncMapping], part: Part = "flows") -> list[TableGrant]:
    """The tables of `zone` the registered mappings (and, in the intranet zone, the bookkeeping) touch."""
    grants: dict[str, TableGrant] = {}

    def grant(table: sa.Table) -> TableGrant:
        return grants.setdefault(table.name, TableGrant(table))

    for mapping in mappings:
        if mapping.source_zone == zone:
            carried = mapping.carried_source_columns
            source = source_table(mapping, engine)
            grant(source).allow("INSERT", select=carried, update=_non_key(carried, mapping.source_keys))
            if part == "flows" and captures_deletes(engine):  # its tombstones (in the source table's database)
                grant(bookkeeping.sync_tombstone).allow("SELECT", "UPDATE")
        if mapping.target_zone == zone:
            model = mapping.target_columns
            target = target_table(mapping, engine)
            grant(target).allow("INSERT", select=model, update=_non_key(model, mapping.keys))
            if part == "flows":
                _allow_deletes(mapping, engine, grant(target), grant)
    if zone == "intranet":
        for name, privileges in _BOOKKEEPING[part].items():
            grant(bookkeeping.metadata.tables[name]).allow(*privileges)
        if part == "api":
            grant(bookkeeping.sync_error).allow(update=_ERROR_UPDATES, upsert=QUARANTINE_INSERTS)
            grant(bookkeeping.sync_schema).allow(update=("broken_at",))  # a break it sees is recorded at once
    return sorted(grants.values(), key=lambda g: g.table.name)


def _allow_deletes(mapping: SyncMapping, engine: Engine, target: TableGrant,
                   grant: Callable[[sa.Table], TableGrant]) -> None:  # fmt: skip
    """What carrying the mapping's deletes does to its target: set the marker (soft), move the row to the archive
    (archive), delete it (hard, archive); the marker is read and cleared when a row is sent again."""
    if mapping.on_delete == "soft" and mapping.deleted_marker in target.table.c:
        target.allow(select=[mapping.deleted_marker], update=[mapping.deleted_marker])
    if mapping.on_delete in ("archive", "hard"):
        target.allow("DELETE")
    if mapping.on_delete == "archive":
        try:
            archive = reflect_table(engine, mapping.archive_table_name, mapping.target_zone, mapping.name)
        except SyncError:  # not made yet: `zonesync init` says so
            return
        grant(archive).allow("INSERT", "DELETE", select=[mapping.deleted_marker])  # a rolled-back delete's copy goes


def _non_key(columns: Iterable[str], keys: Iterable[str]) -> list[str]:
    return [name for name in columns if name not in set(keys)]


def grant_statements(
    zone: Zone, engine: Engine, mappings: Iterable[SyncMapping], role: str, part: Part = "flows"
) -> list[str]:
    """The GRANT statements of one zone for one part of zonesync, in its database's own syntax."""
    return installing_for(engine).grant_statements(zone_grants(zone, engine, mappings, part), role)
