"""Carrying a mapping's tombstones to the target, batch by batch, before its rows (so a row deleted and inserted
again lands after its delete: the later wins).

Each batch goes like a batch of rows (`tasks/sync/batch.py`): its tombstones are **claimed** (flagged in an open
source transaction, which locks them: an insert of the same key, whose trigger would supersede them, waits), the
deletes are **applied** in one target transaction by the mapping's policy (`tasks/deletes/policies.py`), the
outcomes and the bookkeeping are written, and the source transaction commits last. A crash before that commit
leaves the tombstones pending: applied again, a delete finds its row `absent`. A refused delete (the target row is
newer, or in a state never deleted) is quarantined in `sync_error` and its tombstone stays pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from sqlalchemy.engine import Connection, Engine, Transaction

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.jobs import BatchRecord
from zonesync.tasks.bookkeeping.quarantine import count_open_errors, quarantine, record_keys, resolve
from zonesync.tasks.deletes import tombstones
from zonesync.tasks.deletes.policies import OUTCOME, REFUSALS, TargetTables, apply_deletes, target_tables
from zonesync.tasks.deletes.tombstones import TOMBSTONE
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.schema.catalog import target_table
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.engines import dialect_for, in_transaction
from zonesync.tasks.zones.failures import translate
from zonesync.tasks.zones.pipeline import Steps, carry_batches

_REASONS = {outcome: reason for outcome, (reason, _message) in REFUSALS.items()}  # outcome -> sync_error reason


@dataclass
class _Held:
    """A claimed batch: its tombstones, held by the open source transaction of `conn`."""

    batch: pl.DataFrame
    claimed: tombstones.Claimed
    conn: Connection
    transaction: Transaction

    def end(self, *, commit: bool) -> None:
        """Commit the claim (its tombstones settled) or roll it back (they stay pending); the connection goes back."""
        try:
            if self.transaction.is_active and commit:
                self.transaction.commit()
            elif self.transaction.is_active:
                self.transaction.rollback()
        finally:
            self.conn.close()


@dataclass
class DeleteCarrier:
    """Carries one mapping's pending tombstones from its source zone to its target zone."""

    mapping: SyncMapping
    source: Engine
    target: Engine
    intranet: Engine
    record: BatchRecord | None = None
    _resolving: bool = field(default=False, init=False)  # open quarantine entries of the mapping to resolve

    def carry(self, batch_size: int, result: MappingSyncResult) -> None:
        """Every pending tombstone, in the order recorded, batch by batch (reading, claiming and delivering
        overlapped as a row sync's are: `tasks/zones/pipeline.py`); the counts go into `result`."""
        if not tombstones.captures_deletes(self.source) or not tombstones.count_pending(self.source, self.mapping):
            return
        tables = target_tables(self.mapping, self.target, target_table(self.mapping, self.target))
        self._resolving = count_open_errors(self.intranet, self.mapping.name) > 0  # else nothing to resolve
        steps = Steps(
            lambda after: tombstones.read_pending(self.source, self.mapping, after, batch_size),
            lambda batch: int(batch[TOMBSTONE][-1]),
            self._claim,
            lambda held: _count(self._deliver_claimed(held, tables), result),
            lambda held: held.end(commit=False),
        )
        overlap = dialect_for(self.source).row_locks and tombstones.claims_exactly(self.source)
        carry_batches(steps, full=batch_size, overlap=overlap)

    def _claim(self, batch: pl.DataFrame) -> _Held:
        """Hold the batch's tombstones in a source transaction left open until their delivery commits it."""
        conn = self._connect()
        try:
            transaction = conn.begin()
            expected: tombstones.Outcome = "skipped" if self.mapping.on_delete == "ignore" else "applied"
            claimed = tombstones.claim(conn, self.mapping, batch[TOMBSTONE].to_list(), expected=expected)
        except Exception as exc:
            conn.close()
            raise self._translated(exc) from exc
        return _Held(batch.filter(pl.col(TOMBSTONE).is_in(claimed.ids)), claimed, conn, transaction)

    def _deliver_claimed(self, held: _Held, tables: TargetTables) -> pl.DataFrame:
        """Apply the claimed deletes in the target, settle them and do the bookkeeping; the source commits last."""
        committed = False
        try:
            checkpoint("deletes:claimed")
            claimed = held.batch
            latest = claimed.unique(self.mapping.keys, keep="last", maintain_order=True)
            outcomes = pl.concat([self._deliver(latest, tables), _superseded(claimed, latest)])
            checkpoint("deletes:applied")
            tombstones.settle(held.conn, self.mapping, outcomes, held.claimed)
            if self.mapping.source_zone == "intranet":  # the bookkeeping commits with the flags it describes
                self._bookkeep(held.conn, claimed, outcomes)
            held.end(commit=True)
            committed = True
            if self.mapping.source_zone != "intranet":
                in_transaction(self.intranet, lambda intranet: self._bookkeep(intranet, claimed, outcomes))
            return outcomes
        except Exception as exc:
            raise self._translated(exc) from exc
        finally:
            if not committed:
                held.end(commit=False)

    def _deliver(self, latest: pl.DataFrame, tables: TargetTables) -> pl.DataFrame:
        """Apply the deletes in the target (or skip them all: `ignore`); the target's ledger count commits with
        them when the target is the intranet zone."""

        def apply(conn: Connection) -> pl.DataFrame:
            if self.mapping.on_delete == "ignore":
                outcomes = latest.select(TOMBSTONE, pl.lit("skipped").alias(OUTCOME))
            else:
                outcomes = apply_deletes(dialect_for(self.target), conn, tables, self.mapping, latest)
            if self.record is not None and self.mapping.target_zone == "intranet":
                self.record(conn, 0, _done(outcomes), 0)
            return outcomes

        if latest.is_empty():
            return latest.select(TOMBSTONE, pl.lit("skipped").alias(OUTCOME))
        return in_transaction(self.target, apply)

    def _bookkeep(self, conn: Connection, claimed: pl.DataFrame, outcomes: pl.DataFrame) -> None:
        """Quarantine the refused deletes, resolve the entries of rows gone, count the batch."""
        joined = claimed.join(outcomes, on=TOMBSTONE)
        keyed = joined.with_columns(record_keys(joined, self.mapping.keys))
        refused = keyed.filter(pl.col(OUTCOME).is_in(list(_REASONS)))
        reasons = refused.select("record_key", pl.col(OUTCOME).replace_strict(_REASONS).alias("reason"),
                                 pl.col(OUTCOME).replace_strict(self._details()).alias("detail"))  # fmt: skip
        quarantine(conn, self.mapping, reasons, reopen=True)
        gone = keyed.filter(pl.col(OUTCOME).is_in(["applied", "absent"]))["record_key"].to_list()
        if gone and self._resolving:
            resolve(conn, self.mapping.name, gone)
        if self.record is not None:
            synced = _done(outcomes) if self.mapping.source_zone == "intranet" else 0  # else counted in the target
            self.record(conn, outcomes.height, synced, refused.height)

    def _details(self) -> dict[str, str]:
        version = self.mapping.version_column
        kept = ", ".join(f"{column} in {list(values)}" for column, values in self.mapping.never_delete.items())
        return {
            "conflict": f"not deleted: the target row is newer than the row deleted (its {version})",
            "kept": f"not deleted: the target row is in a state never deleted ({kept})",
        }

    def _connect(self) -> Connection:
        try:
            return self.source.connect()
        except Exception as exc:
            raise translate(exc, what=f"connecting to the {self.mapping.source_zone} zone",
                            mapping=self.mapping.name) from exc  # fmt: skip

    def _translated(self, exc: Exception) -> SyncError:
        if isinstance(exc, SyncError):
            return exc
        return translate(exc, what=f"carrying deletes of {self.mapping.name}", mapping=self.mapping.name)


def _count(outcomes: pl.DataFrame, result: MappingSyncResult) -> None:
    counted = outcomes[OUTCOME].value_counts()
    count = dict(zip(counted[OUTCOME].to_list(), counted["count"].to_list(), strict=True))
    result.deletes_applied += count.get("applied", 0) + count.get("absent", 0)
    result.deletes_skipped += count.get("skipped", 0) + count.get("superseded", 0)
    result.deletes_refused += sum(count.get(outcome, 0) for outcome in tombstones.REFUSED)


def _done(outcomes: pl.DataFrame) -> int:
    return outcomes.filter(pl.col(OUTCOME).is_in(list(tombstones.DONE))).height


def _superseded(claimed: pl.DataFrame, latest: pl.DataFrame) -> pl.DataFrame:
    """Older tombstones of a key with a later one in the batch: the later decides."""
    older = claimed.join(latest.select(TOMBSTONE), on=TOMBSTONE, how="anti")
    return older.select(TOMBSTONE, pl.lit("superseded").alias(OUTCOME))
