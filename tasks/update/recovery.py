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
from typing import Any

from sqlalchemy.engine import Engine

from zonesync.schemas.errors import ConfigError, SyncError
from zonesync.tasks.bookkeeping.lease import LeaseBusy, holding, mapping_lease
from zonesync.tasks.bookkeeping.tables import missing_tables
from zonesync.tasks.push.records import column_value
from zonesync.tasks.update.intents import IntentState, close_intent, unfinished_intents
from zonesync.tasks.update.sides import Sides
from zonesync.tasks.update.twophase import resolve_in_doubt


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
    mapping = sides.mapping
    key = {c.source: v for c, v in zip(mapping.key_columns, json.loads(intent["record_key"]).values(), strict=True)}
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
