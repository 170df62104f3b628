"""Durable intent records for the update with rollback (in the intranet zone, beside the bookkeeping tables).

An update writes its intent — the before-image of the changed source columns, and the changes — before it
touches either zone, and marks it finished after. A crash in between leaves an unfinished intent, which the
next run of any flow (or `zonesync recover`) repairs (tasks/update/recovery.py): the source row is sent again, and the
before-image and changes say whether that completed the update or rolled it back.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.tasks.bookkeeping.tables import sync_intent, utc_now
from zonesync.tasks.zones.engines import in_transaction

IntentState = Literal["started", "prepared", "committed", "rolled_back", "conflict"]
DELETE = "zonesync:delete"  # the `changes` of a delete's intent: {DELETE: true} (tasks/update/deletion.py)


def dumps(values: dict[str, Any]) -> str:
    """Column values as JSON text (decimals and timestamps as their exact text)."""
    return json.dumps(values, default=str, sort_keys=True, ensure_ascii=False)


def open_intent(engine: Engine, mapping: str, record_key: str, before: dict[str, Any], changes: dict[str, Any]) -> int:
    """Record, durably, that an update is about to start; return its id."""
    statement = sa.insert(sync_intent).values(
        mapping=mapping, record_key=record_key, state="started", transaction_id=uuid.uuid4().hex,
        before_image=dumps(before), changes=dumps(changes), created_at=utc_now(),
    )  # fmt: skip

    def insert(conn: Connection) -> int:
        result = conn.execute(statement)
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    return in_transaction(engine, insert)


def transaction_id(engine: Engine, intent_id: int) -> str:
    """The random id that names an intent's prepared transactions (unique across databases and servers)."""
    with engine.connect() as conn:
        return str(
            conn.execute(sa.select(sync_intent.c.transaction_id).where(sync_intent.c.id == intent_id)).scalar_one()
        )


def close_intent(engine: Engine, intent_id: int, state: IntentState, message: str = "") -> None:
    """Mark an intent finished (committed, rolled back, or left in conflict for an operator)."""
    statement = (
        sa.update(sync_intent)
        .where(sync_intent.c.id == intent_id)
        .values(state=state, finished_at=utc_now(), message=message[:4000])
    )
    in_transaction(engine, lambda conn: conn.execute(statement))


def mark_intent(engine: Engine, intent_id: int, state: IntentState) -> None:
    """Move an unfinished intent to another unfinished state (`prepared`: both sides prepared, commit decided)."""
    statement = sa.update(sync_intent).where(sync_intent.c.id == intent_id).values(state=state)
    in_transaction(engine, lambda conn: conn.execute(statement))


def unfinished_intents(engine: Engine) -> list[dict[str, Any]]:
    """Intents a crash left behind, oldest first."""
    unfinished = sync_intent.c.state.in_(["started", "prepared"])
    query = sa.select(sync_intent).where(unfinished).order_by(sync_intent.c.id)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
