"""Two-phase commit for the update with rollback, when both databases offer it.

PostgreSQL (`max_prepared_transactions > 0`) and MariaDB (XA) can prepare a transaction and commit it
later. The source update and the target upsert are prepared on both sides; the intent record then takes
state `prepared` — the decision to commit — and both commit. Transaction ids name the intent, so recovery
after a crash knows what each in-doubt transaction belongs to: commit it if its intent was decided, roll it
back if not.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import SyncError
from zonesync.tasks.sync.transform import ROW, to_target_schema
from zonesync.tasks.update.intents import IntentState, mark_intent, transaction_id
from zonesync.tasks.update.sides import Sides, UpdateConflict
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.failures import translate

logger = get_logger("zonesync.update")


def xids(transaction_id: str) -> tuple[str, str]:
    """The source-side and target-side prepared transaction ids of an intent."""
    return f"zonesync-{transaction_id}-s", f"zonesync-{transaction_id}-t"


def commit_both(sides: Sides, intranet: Engine, intent_id: int, key: dict[str, Any], before: dict[str, Any],
                changes: dict[str, Any]) -> bool:  # fmt: skip
    """Prepare the source update and the target upsert, record the decision, commit both (or neither).

    True when both committed here; False when the decision was recorded but a commit failed (a connection
    lost): the prepared side survives, and recovery commits it.
    """
    source_xid, target_xid = xids(transaction_id(intranet, intent_id))
    with sides.source_dialect.engine.connect() as source, sides.target_dialect.engine.connect() as target:
        source_tx = source.begin_twophase(source_xid)
        target_tx = None
        try:
            source.execute(sides.clear_flag_statement(key))  # then the change: how the writers' triggers tell it
            if source.execute(sides.update_statement(key, before, changes)).rowcount != 1:
                raise UpdateConflict("the source row changed while it was being updated", mapping=sides.mapping.name)
            sides.verify_source(source)
            target_tx = target.begin_twophase(target_xid)
            upsert_one(sides, target, sides.read_source(key, source))
            source_tx.prepare()
            target_tx.prepare()
            checkpoint("update:undecided")
        except Exception as exc:
            for tx in (target_tx, source_tx):
                roll_back(tx)
            if isinstance(exc, SyncError):
                raise
            raise translate(exc, what="updating both zones", mapping=sides.mapping.name) from exc
        mark_intent(intranet, intent_id, "prepared")  # the decision: from here on, recovery commits
        checkpoint("update:prepared")
        try:  # the target first: the source's flag is never committed before the target holds the values
            target_tx.commit()
            source_tx.commit()
        except sa.exc.DBAPIError as exc:
            logger.warning("%s: commit after the decision failed, recovery completes it: %s", sides.mapping.name, exc)
            return False
    return True


def roll_back(tx: Any) -> None:
    """Roll a (prepared or not) transaction back; a side whose prepare failed only loses its connection."""
    if tx is None or not tx.is_active:
        return
    try:
        tx.rollback()
    except sa.exc.DBAPIError:
        tx.connection.invalidate()  # a side whose prepare failed has nothing to roll back: drop the connection


def upsert_one(sides: Sides, conn: Connection, source_row: pl.DataFrame) -> None:
    """The target row of one source row: UPDATE by key, INSERT if there was none (any transaction kind)."""
    mapping = sides.mapping
    row = sides.target_dialect.encode(to_target_schema(source_row, mapping).frame.drop(ROW)).row(0, named=True)
    table = sides.target
    by_key = [table.c[k] == row[k] for k in mapping.keys]
    changed = {name: value for name, value in row.items() if name not in mapping.keys}
    if conn.execute(sa.update(table).where(*by_key).values(changed)).rowcount == 0:
        conn.execute(sa.insert(table).values(row))
    sides.verify_target(conn)


def resolve_in_doubt(sides: Sides, intent: dict[str, Any]) -> IntentState | None:
    """Commit (intent decided) or roll back (not decided) the prepared transactions of an intent; the outcome
    or None when there were none."""
    decided = intent["state"] == "prepared"
    found = False
    engines = (sides.source_dialect.engine, sides.target_dialect.engine)
    for engine, xid in zip(engines, xids(intent["transaction_id"]), strict=True):
        if not sides.dialect_of(engine).supports_two_phase():
            continue
        # COMMIT PREPARED / XA COMMIT refuse to run inside a transaction: autocommit.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            prepared = {x.decode() if isinstance(x, bytes) else str(x) for x in conn.recover_twophase()}  # XA: bytes
            if xid in prepared:
                found = True
                (conn.commit_prepared if decided else conn.rollback_prepared)(xid, recover=True)
    if decided:
        return "committed"
    return "rolled_back" if found else None
