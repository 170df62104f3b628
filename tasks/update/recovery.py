"""Repair the updates with rollback that a crash (or a stall long enough to lose their lease) left unfinished.

Two-phase updates: in-doubt prepared transactions are committed when their intent was decided and rolled back
otherwise. Intent-record updates: the source row is sent to the target again the way every batch is sent
(`tasks.batch`: claimed — flagged and locked — then written, then committed), so both zones end with the
source's values whatever the moment of the crash: the new ones if the source update committed (the update
is completed), the old ones if not (it is rolled back). Recovery never writes the source's values by hand, so
an update that is still running — paused, not dead — can never be undone under its feet: its source row is
locked while it writes the target, and recovery either waits for it or finds the row changed and sends that.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import ConfigError, SyncError
from zonesync.tasks.bookkeeping.lease import LeaseBusy, holding, mapping_lease
from zonesync.tasks.bookkeeping.tables import missing_tables
from zonesync.tasks.deletes.policies import REFUSALS, TargetTables, apply_one, deletion_time, target_tables
from zonesync.tasks.push.records import coerce_key, column_value
from zonesync.tasks.update.intents import DELETE, IntentState, close_intent, unfinished_intents
from zonesync.tasks.update.sides import Sides
from zonesync.tasks.update.twophase import resolve_in_doubt
from zonesync.tasks.zones.engines import in_transaction


def recover_intents(intranet: Engine) -> list[str]:
    """Repair the updates a crash left unfinished; return one line per intent repaired."""
    from zonesync.schemas.registry import all_mappings

    if missing := missing_tables(intranet, ("sync_intent", "sync_lease")):
        raise ConfigError(
            f"bookkeeping tables {', '.join(missing)} are missing in the intranet zone: run `zonesync init`"
        )
    mappings = all_mappings()
    repaired = []
    for intent in unfinished_intents(intranet):
        mapping = mappings.get(intent["mapping"])
        if mapping is None:
            continue
        shown = f"{mapping.name} {mapping.shown_record_key(intent['record_key'])}"
        try:
            with holding(intranet, mapping_lease(mapping.name), ttl=60):
                outcome = _repair(Sides.of(mapping), intent, intranet)
        except LeaseBusy:
            continue  # a run of this mapping is under way: the next flow run repairs it
        except SyncError as exc:  # a zone down, the row locked by a live writer: left for the next recovery
            repaired.append(f"{shown}: not repaired yet ({exc})")
            continue
        if outcome is None:
            continue
        state, message = outcome
        close_intent(intranet, intent["id"], state, message)
        repaired.append(f"{shown}: {state} ({message})")
    return repaired


def _repair(sides: Sides, intent: dict[str, Any], intranet: Engine) -> tuple[IntentState, str] | None:
    """Resolve in-doubt prepared transactions; else send the source row again and say which way it went."""
    in_doubt = resolve_in_doubt(sides, intent)
    if in_doubt is not None:
        return in_doubt, "in-doubt prepared transactions " + ("committed" if in_doubt == "committed" else "rolled back")
    if DELETE in json.loads(intent["changes"]):
        return _finish_delete(sides, intent, intranet)
    key = _key(sides, intent)
    before = _values(sides, intent["before_image"])
    changes = _values(sides, intent["changes"])
    outcome = sides.resend(key, intranet)
    if outcome is None:
        return "conflict", "the source row no longer exists; left as it is"
    if outcome.changed.height:
        return None  # changed again since it was read (by a live writer): the next recovery looks again
    if outcome.refused.height:
        return "conflict", f"the target refuses the source row: {outcome.refused['detail'][0]}"
    now = sides.stored(key, list(changes))
    if now == changes:
        return "committed", "the source held the new values: both zones have them"
    if now == {name: before[name] for name in changes}:
        return "rolled_back", "the source held the old values: both zones have them again"
    return "conflict", "the row was changed by someone else since; both zones hold its current values"


def _values(sides: Sides, image: str) -> dict[str, Any]:
    return {n: column_value(sides.source, sides.mapping, n, v) for n, v in json.loads(image).items()}


def _finish_delete(sides: Sides, intent: dict[str, Any], intranet: Engine) -> tuple[IntentState, str]:
    """A delete a crash left unfinished (in-doubt prepared transactions resolved already): a source row still
    there is sent again, which restores its target copy (rolled back); a source row gone has its target copy go
    by the policy (completed)."""
    mapping, key = sides.mapping, _key(sides, intent)
    tables = target_tables(mapping, sides.target_dialect.engine, sides.target)
    if sides.resend(key, intranet) is not None:
        _unarchive(sides, tables, key, intent["created_at"])
        return "rolled_back", "the source still held the row: its target copy is restored"
    row = sides.target_dialect.encode(pl.DataFrame([{c.name: key[c.source] for c in mapping.key_columns}]))
    target_row: dict[str, Any] = {**row.row(0, named=True)}
    for column in mapping.columns:
        if column.source == mapping.version_column:
            target_row[column.name] = None  # the deleted row's version is gone with it: judged by its state only
    moment = deletion_time(sides.target_dialect)
    outcome = in_transaction(sides.target_dialect.engine, lambda conn: apply_one(conn, tables, mapping, target_row,
                                                                                  moment))  # fmt: skip
    if outcome in REFUSALS:
        return "conflict", REFUSALS[outcome][1]
    return "committed", "the source row was gone: its target copy went too"


def _unarchive(sides: Sides, tables: TargetTables, key: dict[str, Any], since: datetime) -> None:
    """A delete rolled back after its target transaction committed: the copy it archived is not a deletion."""
    if tables.archive is None:
        return
    archive, marker = tables.archive, sides.mapping.deleted_marker
    moment = pl.DataFrame({"at": [since.replace(tzinfo=UTC)]}, schema={"at": pl.Datetime("us", "UTC")})
    start = sa.literal(sides.target_dialect.encode(moment)["at"][0], archive.c[marker].type)
    by_key = [archive.c[c.name] == key[c.source] for c in sides.mapping.key_columns]
    copy = sa.delete(archive).where(*by_key, archive.c[marker] >= start)
    in_transaction(sides.target_dialect.engine, lambda conn: conn.execute(copy))


def _key(sides: Sides, intent: dict[str, Any]) -> dict[str, Any]:
    """The source row's key an intent names, as bound."""
    values = json.loads(intent["record_key"]).values()
    key = {c.source: v for c, v in zip(sides.mapping.key_columns, values, strict=True)}
    return coerce_key(sides.source, sides.mapping, key)
