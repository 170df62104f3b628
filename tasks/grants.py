"""The least privileges zonesync's flows, its HTTP entry point and `zonesync recover` need in each zone, as GRANT
statements (`zonesync grants`). `zonesync init` (which creates tables and triggers) runs as the tables' owner.

What each table needs, and why:

- a mapping's source table: SELECT, INSERT, and UPDATE of its non-key columns (reads of unsynced rows, the
  push's insert, the flag, the update with rollback);
- a mapping's target table: SELECT, INSERT, and UPDATE of its non-key columns (the upsert and its conflict
  check, the update's target row, reconciliation);
- batch_job, sync_error, sync_intent (intranet): SELECT, INSERT, UPDATE (the ledger, the quarantine, update
  intents); sync_lease: DELETE too (leases are given back); api_audit: SELECT, INSERT (the audit trail);
  api_idempotency: SELECT, INSERT, UPDATE, DELETE (answers kept for a retention, then forgotten);
  sync_schema: SELECT, INSERT, UPDATE (the accepted shape of each mapping's tables);
- each zone's database: temporary tables (bulk loads go through them) and the sequences behind generated ids.

Two-phase commit needs nothing more: a role commits or rolls back the transactions it prepared itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.settings import Zone
from zonesync.tasks import bookkeeping
from zonesync.tasks.catalog import source_table, target_table
from zonesync.tasks.dialects import dialect_for
from zonesync.tasks.dialects.installing import TableGrant

_BOOKKEEPING = {
    "batch_job": ("SELECT", "INSERT", "UPDATE"),
    "sync_error": ("SELECT", "INSERT", "UPDATE"),
    "sync_intent": ("SELECT", "INSERT", "UPDATE"),
    "sync_lease": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "api_audit": ("SELECT", "INSERT"),
    "api_idempotency": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "sync_schema": ("SELECT", "INSERT", "UPDATE"),
}


def zone_grants(zone: Zone, engine: Engine, mappings: Iterable[SyncMapping]) -> list[TableGrant]:
    """The tables of `zone` the registered mappings (and, in the intranet zone, the bookkeeping) touch."""
    grants: dict[str, TableGrant] = {}

    def grant(table: sa.Table) -> TableGrant:
        return grants.setdefault(table.name, TableGrant(table))

    for mapping in mappings:
        if mapping.source_zone == zone:
            source = source_table(mapping, engine)
            grant(source).allow("SELECT", "INSERT", update=_non_key(source, mapping.source_keys))
        if mapping.target_zone == zone:
            target = target_table(mapping, engine)
            grant(target).allow("SELECT", "INSERT", update=_non_key(target, mapping.keys))
    if zone == "intranet":
        for name, privileges in _BOOKKEEPING.items():
            grant(bookkeeping.metadata.tables[name]).allow(*privileges)
    return sorted(grants.values(), key=lambda g: g.table.name)


def _non_key(table: sa.Table, keys: Iterable[str]) -> list[str]:
    return [column.name for column in table.columns if column.name not in set(keys)]


def grant_statements(zone: Zone, engine: Engine, mappings: Iterable[SyncMapping], role: str) -> list[str]:
    """The GRANT statements of one zone, in its database's own syntax."""
    return dialect_for(engine).grant_statements(zone_grants(zone, engine, mappings), role)
