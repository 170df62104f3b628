"""The delete with rollback, the update's sibling: the source row and its target copy go as one unit (the target's
copy by the mapping's `on_delete` policy), or neither does, and a crash between the two commits is repaired later.

Order: read the row → write the intent (its key; `changes` marks a delete) → then either two-phase commit (the
source's DELETE and the target's delete prepared, the decision recorded, target committed, then source), or:
clear the source flag → DELETE the source row in a transaction kept open (the row stays locked) → delete the
target copy → commit the source → close the intent. A target that refuses (its row is newer, or in a state never
deleted) rolls the open source transaction back. A crash after the target's commit and before the source's
leaves the source row unflagged: recovery (or the cron retry) sends it again, which restores the target copy.

The source DELETE fires the delete capture like any other (`zonesync init --triggers`): its tombstone, carried by
the next run, finds the target copy gone (`absent`).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.lease import holding, mapping_lease
from zonesync.tasks.bookkeeping.quarantine import source_record_keys
from zonesync.tasks.deletes.policies import (
    REFUSALS,
    DeleteRefused,
    TargetTables,
    apply_one,
    deletion_time,
    target_tables,
)
from zonesync.tasks.push.records import coerce_key, json_friendly
from zonesync.tasks.results import UpdateResult
from zonesync.tasks.sync.transform import ROW, to_target_schema
from zonesync.tasks.update.intents import DELETE, close_intent, mark_intent, open_intent, transaction_id
from zonesync.tasks.update.recovery import recover_intents
from zonesync.tasks.update.rollback import ANSWERED, UPDATE_WAIT_SECONDS, answered, logger, refused
from zonesync.tasks.update.sides import Sides, UpdateConflict
from zonesync.tasks.update.twophase import roll_back, xids
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.engines import get_engine, in_transaction
from zonesync.tasks.zones.failures import translate


def delete_record(mapping: SyncMapping, key: object) -> UpdateResult:
    """Delete one source row and its target copy as one unit (see the module docstring)."""
    intranet = get_engine("intranet")
    shown_key = {name: json_friendly(value) for name, value in key.items()} if isinstance(key, dict) else {}
    if mapping.on_delete == "ignore":
        return UpdateResult(mapping.name, shown_key, "error", "not_carried",
                            f"{mapping.name} does not carry deletes (on_delete='ignore'): nothing deleted")  # fmt: skip
    try:
        recover_intents(intranet)
        sides = Sides.of(mapping)
        typed_key = coerce_key(sides.source, mapping, key, sides.source_dialect.refusal)
        tables = target_tables(mapping, sides.target_dialect.engine, sides.target)
        with holding(intranet, mapping_lease(mapping.name), ttl=60, wait=UPDATE_WAIT_SECONDS, keep_alive=True):
            return _delete(sides, tables, intranet, typed_key)
    except ANSWERED as exc:
        return answered(mapping, shown_key, exc, verb="delete")


def _delete(sides: Sides, tables: TargetTables, intranet: Engine, key: dict[str, Any]) -> UpdateResult:
    mapping = sides.mapping
    row = sides.read_source(key)
    if row.is_empty():
        return UpdateResult(mapping.name, key, "error", "not_found",
                            f"no {mapping.source_table} row with key {mapping.shown_key(key)}")  # fmt: skip
    before = sides.stored(key, list(mapping.guard_columns), raw=True)
    assert before is not None
    record_key = str(source_record_keys(row, mapping)[0])
    intent = open_intent(intranet, mapping.name, record_key, sides.comparable(before), {DELETE: True})
    # The deletion time after the intent's: recovery tells the copy a rolled-back delete archived by it.
    gone = Gone(sides, tables, key, before, _target_row(sides, row), deletion_time(sides.target_dialect))
    try:
        decided = gone.both_prepared(intranet, intent) if sides.two_phase() else gone.source_held_open()
    except SyncError as exc:
        close_intent(intranet, intent, "rolled_back", str(exc))
        if isinstance(exc, UpdateConflict):
            raise
        return refused(mapping, key, exc, "rolled back: ", verb="delete")
    if not decided:
        return UpdateResult(mapping.name, key, "success",
                            message="deleted in both zones; a last step failed and recovery completes it")  # fmt: skip
    close_intent(intranet, intent, "committed")
    how = {"soft": "marked deleted", "archive": "archived", "hard": "deleted"}[mapping.on_delete]
    return UpdateResult(mapping.name, key, "success", message=f"deleted in the source, {how} in the target")


class Gone:
    """One row's delete in both zones: its statements and the two ways of committing them."""

    def __init__(self, sides: Sides, tables: TargetTables, key: dict[str, Any], before: dict[str, Any],
                 target_row: dict[str, Any], deleted_at: Any) -> None:  # fmt: skip
        self.sides, self.tables, self.key, self.before = sides, tables, key, before
        self.target_row, self.deleted_at = target_row, deleted_at

    def delete_source(self, conn: Connection) -> None:
        """DELETE the row — only while it still holds what was read (its guard columns)."""
        source, same = self.sides.source, self.sides.source_dialect.same_value
        unchanged = [same(source.c[n], sa.literal(v, source.c[n].type)) for n, v in self.before.items()]
        deleted = conn.execute(sa.delete(source).where(*self.sides.where_key(self.key), *unchanged)).rowcount
        if deleted != 1:
            raise UpdateConflict("the source row changed while it was being deleted; nothing deleted",
                                 mapping=self.sides.mapping.name)  # fmt: skip
        self.sides.verify_source(conn)

    def delete_target(self, conn: Connection) -> None:
        """Apply the policy to the target copy; a refusal raises (the caller rolls both back)."""
        outcome = apply_one(conn, self.tables, self.sides.mapping, self.target_row, self.deleted_at)
        if outcome in REFUSALS:
            raise DeleteRefused(outcome, self.sides.mapping.name)
        self.sides.verify_target(conn)

    def source_held_open(self) -> bool:
        """Without two-phase commit: flag cleared, source DELETE held open while the target's copy goes."""
        sides = self.sides
        _guarded(lambda: in_transaction(sides.source_dialect.engine,
                                        lambda conn: conn.execute(sides.clear_flag_statement(self.key))),
                 sides, "clearing the source row's flag")  # fmt: skip
        checkpoint("delete:flag-cleared")
        with sides.source_dialect.engine.connect() as conn:
            transaction = conn.begin()
            try:
                _guarded(lambda: self.delete_source(conn), sides, "deleting the source row")
                checkpoint("delete:source-deleted")
                _guarded(lambda: in_transaction(sides.target_dialect.engine, self.delete_target), sides,
                         f"deleting from {sides.mapping.target_zone} table {sides.target.name!r}")  # fmt: skip
                checkpoint("delete:target-deleted")
            except SyncError:
                transaction.rollback()
                _flag_again(sides, self.key)
                raise
            transaction.commit()
        checkpoint("delete:committed")
        return True

    def both_prepared(self, intranet: Engine, intent: int) -> bool:
        """Two-phase: both deletes prepared, the decision recorded, target then source committed; False when a
        commit after the decision failed (recovery completes it)."""
        sides = self.sides
        source_xid, target_xid = xids(transaction_id(intranet, intent))
        with sides.source_dialect.engine.connect() as source, sides.target_dialect.engine.connect() as target:
            source_tx, target_tx = source.begin_twophase(source_xid), None
            try:
                source.execute(sides.clear_flag_statement(self.key))
                self.delete_source(source)
                target_tx = target.begin_twophase(target_xid)
                self.delete_target(target)
                source_tx.prepare()
                target_tx.prepare()
                checkpoint("delete:undecided")
            except Exception as exc:
                for tx in (target_tx, source_tx):
                    roll_back(tx)
                if isinstance(exc, SyncError):
                    raise
                raise translate(exc, what="deleting in both zones", mapping=sides.mapping.name) from exc
            mark_intent(intranet, intent, "prepared")
            checkpoint("delete:prepared")
            try:
                target_tx.commit()
                source_tx.commit()
            except sa.exc.DBAPIError:
                return False
        return True


def _flag_again(sides: Sides, key: dict[str, Any]) -> None:
    """A delete rolled back: the row is sent again so that it is flagged as it was (if the target cannot take even
    that now, it stays for the cron retry)."""
    try:
        sides.resend(key, get_engine("intranet"))
    except SyncError as exc:
        logger.warning("%s: the row stays unflagged for the cron retry: %s", sides.mapping.name, exc)


def _guarded(action: Any, sides: Sides, what: str) -> Any:
    try:
        return action()
    except SyncError:
        raise
    except Exception as exc:
        raise translate(exc, what=what, mapping=sides.mapping.name) from exc


def _target_row(sides: Sides, row: pl.DataFrame) -> dict[str, Any]:
    """The target copy the source row maps to, in the form the target's driver binds (the key and version that
    judge the delete)."""
    shaped = to_target_schema(row, sides.mapping).frame.drop(ROW)
    return dict(sides.target_dialect.encode(shaped).row(0, named=True))
