"""One batch from the source zone to the target zone, fenced so that no timing can make a row flagged wrongly.

Every flow carries rows the same way (the retry sync and the end-day check batch by batch, the push the rows
it has just inserted, recovery the row it repairs):

1. **prepare** — transform and validate the rows *as read*;
2. **claim** — in one source transaction, flag the valid rows that still hold the values read, which locks
   them: a writer that wants to change one of them now waits for this transaction;
3. **deliver** — upsert the claimed rows into the target (a refused row is isolated, quarantined and its flag
   set back), record the batch's bookkeeping, then commit the source transaction.

So the target only ever receives values that the source holds at that moment and cannot change before the
flag commits: a writer paused anywhere (GC, lock wait, slow network, SIGSTOP) cannot put an older value over
a newer one. A crash before the source commit leaves the rows unflagged (sent again, idempotently), never
flagged wrongly. A row changed since it was read is not claimed: it is `changed in flight`, read again later.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.jobs import BatchRecord
from zonesync.tasks.bookkeeping.quarantine import quarantine_rows, resolve, source_record_keys
from zonesync.tasks.dialects.surface import Claimed, Dialect
from zonesync.tasks.schema.watch import ShapeWatch
from zonesync.tasks.sync.load import upsert_rows
from zonesync.tasks.sync.rejects import rejects
from zonesync.tasks.sync.transform import ROW, to_target_schema
from zonesync.tasks.sync.validate import split_valid
from zonesync.tasks.zones.checkpoints import checkpoint
from zonesync.tasks.zones.engines import in_transaction
from zonesync.tasks.zones.failures import translate
from zonesync.tasks.zones.retrying import retry_delay

Phase = Callable[[str], AbstractContextManager[object]]  # wraps each step, by name: a hook for measuring them


def no_phase(_name: str) -> AbstractContextManager[object]:
    return nullcontext()


@dataclass(frozen=True)
class SourceSide:
    """Where a mapping's rows come from: the reflected table, its dialect, how each column was read, and what
    else every row read meets (one partition's condition), which claims may use."""

    table: sa.Table
    dialect: Dialect
    dtypes: dict[str, pl.DataType]
    within: tuple[sa.ColumnElement[bool], ...] = ()


@dataclass(frozen=True)
class TargetSide:
    """Where a mapping's rows go."""

    table: sa.Table
    dialect: Dialect


@dataclass
class Prepared:
    """A batch as read, its valid target rows (by ROW) and the rows refused before any write."""

    raw: pl.DataFrame
    valid: pl.DataFrame
    rejected: pl.DataFrame


@dataclass
class Claim:
    """A prepared batch whose still-unchanged rows are flagged and locked by an open source transaction."""

    prepared: Prepared
    conn: Connection
    transaction: sa.RootTransaction | None
    rows: pl.DataFrame  # ROW of the valid rows claimed (in the order read)
    owned: bool  # the connection is the claim's own, closed when the claim ends
    flagged_before: int = 0  # of those, rows another writer had flagged with the values read (not counted here)

    def end(self, commit: bool) -> None:
        """Commit (or roll back) the source transaction and give the connection back."""
        try:
            if self.transaction is None or not self.transaction.is_active:
                return
            if commit:
                self.transaction.commit()
                return
            try:
                self.transaction.rollback()
            except sa.exc.DBAPIError:  # a connection that died rolled back by itself: not to be reused
                self.conn.invalidate()
        finally:
            if self.owned:
                self.conn.close()


@dataclass(frozen=True)
class BatchOutcome:
    """Rows (by ROW) written to the target and flagged, rows refused with (reason, detail), rows not claimed."""

    landed: pl.DataFrame
    refused: pl.DataFrame
    changed: pl.DataFrame
    quarantined: int = 0
    flagged_before: int = 0  # landed rows another writer had flagged with the same values: synced, but not by us

    @property
    def synced(self) -> int:
        """The rows this batch synced: landed and flagged by it (what the ledger counts)."""
        return self.landed.height - self.flagged_before


@dataclass
class BatchCarrier:
    """Carries batches of one mapping through prepare → claim → deliver (see the module docstring)."""

    mapping: SyncMapping
    source: SourceSide
    target: TargetSide
    intranet: Engine
    # The scheduled runs resolve the quarantine entries of rows that land and reopen those of rows refused again;
    # a push, an update and recovery only record refusals (the HTTP API's role may not touch resolved_at).
    resolve_open_errors: bool = False
    reopen_errors: bool = False
    record: BatchRecord | None = None
    phase: Phase = no_phase
    watch: ShapeWatch | None = None  # sees the tables' catalog change before each commit (tasks/schema/contract.py)

    def carry(self, raw: pl.DataFrame, source_bind: Connection | None = None,
              target_bind: Engine | Connection | None = None) -> BatchOutcome:  # fmt: skip
        """The three steps at once (a row sent again: recovery, a refused update)."""
        return self.deliver(self.claim(self.prepare(raw), source_bind), target_bind)

    def prepare(self, raw: pl.DataFrame) -> Prepared:
        """Transform and validate the rows as read; lossy values and failed checks are refused."""
        checkpoint("batch:read")
        with self.phase("transform"):
            shaped = to_target_schema(raw, self.mapping)
            exact = shaped.frame
            if shaped.losses.height:
                exact = exact.join(shaped.losses.select(ROW), on=ROW, how="anti")
            checked = split_valid(exact, self.mapping)
            valid = checked.valid
            # Values the target database itself would store altered (a SQLite NUMERIC column: 15 digits).
            inexact = self.target.dialect.inexact_rows(self.target.table, valid, ROW, self.mapping.longest_texts)
            if inexact.height:
                valid = valid.join(inexact.select(ROW), on=ROW, how="anti")
            losses = [rejects(frame, "type_loss") for frame in (shaped.losses, inexact) if frame.height]
            rejected = pl.concat([*losses, checked.rejected]) if losses else checked.rejected
        return Prepared(raw, valid, rejected)

    def claim(self, prepared: Prepared, bind: Connection | None = None) -> Claim:
        """Flag and lock the valid rows still as read, in a source transaction left open (retried when the
        database picks it as a deadlock victim: nothing has been written anywhere yet)."""
        guard, rows = self._guard(prepared)
        for attempt in itertools.count(1):
            conn = bind or self._connect(self.source.dialect.engine, self.mapping.source_zone)
            claim = Claim(prepared, conn, None, rows.clear(), owned=bind is None)
            try:
                claim.transaction = conn.begin()  # held open until the other zone has the rows (`deliver`)
                with self.phase("flag"):
                    claimed = self._claimed(conn, guard)
            except Exception as exc:
                claim.end(commit=False)
                delay = retry_delay(exc, attempt)
                if delay is None:
                    raise self._error(exc, "claiming rows to send") from exc
                time.sleep(delay)
                continue
            if claimed is not None and claimed.rows is not None:
                claim.rows = rows.gather(claimed.rows)
                claim.flagged_before = claim.rows.height - claimed.flagged
            else:
                claim.rows = rows
            return claim
        raise AssertionError("unreachable")

    def deliver(self, claim: Claim, target_bind: Engine | Connection | None = None) -> BatchOutcome:
        """Upsert the claimed rows, set refused ones back to unflagged, record the batch, commit the source."""
        try:
            checkpoint("batch:claimed")
            valid = claim.prepared.valid
            if claim.rows.height != valid.height:  # some rows changed since they were read (joins cost ~0.1 ms)
                valid = valid.join(claim.rows, on=ROW, how="semi")
            with self.phase("upsert"):
                written = upsert_rows(self.target.dialect, self.target.table, valid, self.mapping, target_bind,
                                      within=self._within_target)  # fmt: skip
            checkpoint("batch:delivered")
            if written.refused.height and self.watch is not None:  # refused by the rows, or by a changed table?
                self.watch.check_now(self.target.dialect, self.target.table, self.mapping.target_zone)
            outcome = self._settle(claim, written.landed, written.refused)
            if self.watch is not None:
                self.watch.verify(claim.conn, self.source.dialect, self.source.table, self.mapping.source_zone)
            claim.end(commit=True)
        except BaseException as exc:
            claim.end(commit=False)
            # A write that failed as a whole may have met a changed table; a zone down (transient) is asked nothing
            # more, or an outage would be waited for twice.
            if isinstance(exc, SyncError) and not exc.transient and self.watch is not None:
                explained = self.watch.explain(exc, self.target.dialect, self.target.table, self.mapping.target_zone)
                if explained is not exc:
                    raise explained from exc
            if isinstance(exc, SyncError | KeyboardInterrupt | SystemExit):
                raise
            raise self._error(exc, "committing the synced rows' flags") from exc
        if not self._bookkeeping_in_source:
            outcome = self._record(self.intranet, claim.prepared.raw, outcome)
        return outcome

    def abandon(self, claim: Claim) -> None:
        """Roll a claim back (the run stops before delivering it): its rows stay unflagged."""
        claim.end(commit=False)

    def _within_target(self, conn: Connection, changed: int) -> None:
        """Run in each target transaction after its write: the target table must still be as the run found it
        (else SchemaChanged rolls it back); when the intranet zone is the target (the end-day check), the rows it
        inserted or changed are counted: the count commits with them, and a row sent again unchanged after a
        crash is not counted twice."""
        if self.watch is not None:
            self.watch.verify(conn, self.target.dialect, self.target.table, self.mapping.target_zone)
        if self.record is not None and self.mapping.target_zone == "intranet":
            self.record(conn, 0, changed, 0)

    @property
    def _bookkeeping_in_source(self) -> bool:
        """Bookkeeping goes into the claim's own transaction when the source is the intranet zone: it commits
        with the flags it describes (and on SQLite a second writer of the same file would wait for the claim)."""
        return self.mapping.source_zone == "intranet"

    def _settle(self, claim: Claim, landed: pl.DataFrame, target_refused: pl.DataFrame) -> BatchOutcome:
        prepared = claim.prepared
        if target_refused.height:
            keys = prepared.raw.with_row_index(ROW).join(target_refused, on=ROW, how="semi")
            self.source.dialect.unclaim(
                claim.conn, self.source.table, self.mapping.flag_column, keys.select(self.mapping.source_keys)
            )
        changed = prepared.valid.select(ROW)
        changed = (
            changed.join(claim.rows, on=ROW, how="anti") if claim.rows.height != changed.height else changed.clear()
        )
        refused = pl.concat([prepared.rejected, target_refused]) if target_refused.height else prepared.rejected
        outcome = BatchOutcome(landed, refused, changed, flagged_before=min(claim.flagged_before, landed.height))
        if self._bookkeeping_in_source:
            return self._record(claim.conn, prepared.raw, outcome)
        return outcome

    def _record(self, bind: Engine | Connection, raw: pl.DataFrame, outcome: BatchOutcome) -> BatchOutcome:
        """Quarantine the refused rows, resolve the landed ones, count the batch: all in one intranet transaction."""

        def write(conn: Connection) -> int:
            with self.phase("quarantine"):
                quarantined = quarantine_rows(conn, raw, outcome.refused, self.mapping, reopen=self.reopen_errors)
                if self.resolve_open_errors and outcome.landed.height:
                    landed = raw.with_row_index(ROW).join(outcome.landed, on=ROW, how="semi")
                    resolve(conn, self.mapping.name, source_record_keys(landed, self.mapping).to_list())
                if self.record is not None:
                    synced = outcome.synced if self._bookkeeping_in_source else 0  # else counted in the target
                    self.record(conn, raw.height, synced, quarantined)
            return quarantined

        try:
            quarantined = in_transaction(bind, write)  # on the claim's connection: in its transaction
        except Exception as exc:
            what = "recording the batch in the bookkeeping tables"
            raise translate(exc, what=what, mapping=self.mapping.name) from exc
        return BatchOutcome(outcome.landed, outcome.refused, outcome.changed, quarantined, outcome.flagged_before)

    def _guard(self, prepared: Prepared) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The key and guard values, as read, of the valid rows (in the order read), and their ROW numbers."""
        columns = list(dict.fromkeys([*self.mapping.source_keys, *self.mapping.guard_columns]))
        numbered = prepared.raw.with_row_index(ROW)
        if prepared.valid.height != prepared.raw.height:  # a filter keeps the order read (the key range relies on it)
            numbered = numbered.filter(pl.col(ROW).is_in(prepared.valid[ROW].implode()))
        return numbered.select(columns), numbered.select(ROW)

    def _claimed(self, conn: Connection, guard: pl.DataFrame) -> Claimed | None:
        if guard.is_empty():
            return None
        return self.source.dialect.claim(conn, self.source.table, self.mapping.flag_column, guard,
                                         self.mapping.source_keys, self.source.dtypes, self.source.within)  # fmt: skip

    def _connect(self, engine: Engine, zone: str) -> Connection:
        try:
            return engine.connect()
        except Exception as exc:
            raise translate(exc, what=f"connecting to the {zone} zone", mapping=self.mapping.name) from exc

    def _error(self, exc: BaseException, what: str) -> SyncError:
        return translate(exc, what=f"{what} in the {self.mapping.source_zone} zone", mapping=self.mapping.name)
