"""The one consistency checker of every drill: zonesync's guarantees, read back from the databases.

Run it after the drill's processes have ended, `recover` has run and (where the drill's flows need it) one final
clean run. It returns violations as readable lines; an empty list means consistent.

Per mapping:
1. each source row (eligible for the mapping) is (a) flagged and present in the target with equal mapped
   values, (b) unflagged with an open sync_error row, or (c) unflagged — and after the final run (c) is empty;
2. no duplicate key in the target, no target row without its source row; where deletes are captured, after the
   final run no tombstone pending but a quarantined one, and no archived copy of a row the source still holds;
3. every batch_job row of the drill is finished with a known status, and, where only scheduled jobs flagged
   rows, the jobs' rows_synced add up to the rows they flagged and the deletes they carried;
4. no sync_intent left started/prepared, no sync_lease row left, no prepared transaction of an intent left.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import ZonePair
from tests.integration.helpers import Key, errors_by_key, mapped, rows, source_rows, target_rows
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.tables import batch_job, sync_intent, sync_lease

FINISHED = {"SUCCESS", "NO_RECORD", "PARTIAL", "FAILED", "SKIPPED", "ABORTED"}
SHOWN_KEYS = 5  # keys listed per violation line


@dataclass
class Baseline:
    """What the drill started from: the last batch_job id, and the unflagged source keys per mapping."""

    last_job_id: int
    unflagged: dict[str, set[Key]] = field(default_factory=dict)
    deletes_carried: int = 0  # tombstones carried (a batch_job counts each as synced), of the drill's mappings


def zones_of(pair: ZonePair, mapping: SyncMapping) -> tuple[Engine, Engine]:
    """(source, target) engines of a mapping."""
    return (
        (pair.intranet, pair.internet)
        if mapping.direction == "intranet_to_internet"
        else (pair.internet, pair.intranet)
    )


def take_baseline(pair: ZonePair, mappings: Iterable[SyncMapping]) -> Baseline:
    """Snapshot before the drill (the ledger check needs to know which rows the drill's jobs flagged)."""
    with pair.intranet.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(batch_job.c.id))).scalar() or 0
    chosen = list(mappings)
    unflagged = {m.name: {k for k, v in eligible_rows(pair, m).items() if not v["__flag"]} for m in chosen}
    return Baseline(int(last), unflagged, deletes_carried(pair, chosen))


def deletes_carried(pair: ZonePair, mappings: Iterable[SyncMapping]) -> int:
    """Tombstones of these mappings carried so far (a re-insert's supersede is not a job's: none in the drills)."""
    carried = 0
    for mapping in mappings:
        source = zones_of(pair, mapping)[0]
        if "sync_tombstone" in sa.inspect(source).get_table_names():
            done = [row for row in rows(source, "sync_tombstone") if row["mapping"] == mapping.name and row["is_sync"]]
            carried += sum(row["outcome"] != "superseded" for row in done)
    return carried


def eligible_rows(pair: ZonePair, mapping: SyncMapping) -> dict[Key, dict[str, Any]]:
    """Source rows the mapping carries (its `eligible` filter), normalised, with `__flag`."""
    names = {c.source: c.name for c in mapping.columns}
    wanted = {names.get(column, column): value for column, value in (mapping.eligible or {}).items()}
    found = source_rows(zones_of(pair, mapping)[0], mapping)
    return {k: v for k, v in found.items() if all(v.get(c) == value for c, value in wanted.items())}


def check(
    pair: ZonePair,
    mappings: Iterable[SyncMapping],
    baseline: Baseline,
    *,
    final: bool = True,
    jobs_only: bool = False,
) -> list[str]:
    """Every violation found (empty: consistent). `final`: a clean run has happened, so nothing may be left
    pending; `jobs_only`: only scheduled jobs flagged rows in this drill, so the ledger counts must add up."""
    chosen = list(mappings)
    found: list[str] = []
    for mapping in chosen:
        found += check_rows(pair, mapping, final=final)
    found += check_ledger(pair, chosen, baseline, jobs_only=jobs_only)
    found += check_leftovers(pair)
    return found


def check_rows(pair: ZonePair, mapping: SyncMapping, *, final: bool) -> list[str]:
    """Rules 1 and 2 for one mapping."""
    source, target = zones_of(pair, mapping)
    sources, targets = eligible_rows(pair, mapping), target_rows(target, mapping)
    all_source_keys = set(source_rows(source, mapping))
    open_errors = errors_by_key(pair.intranet, mapping, open_only=True)
    missing, differ, pending = [], [], []
    for key, values in sorted(sources.items()):
        if values["__flag"]:
            if key not in targets:
                missing.append(key)
            elif targets[key] != mapped(values):
                differ.append((key, _difference(mapped(values), targets[key])))
        elif key not in open_errors:
            pending.append(key)
    name = mapping.name
    found = []
    if missing:
        found.append(f"{name}: {len(missing)} flagged row(s) missing in the target: {_keys(missing)}")
    if differ:
        shown = "; ".join(f"{key}: {diff}" for key, diff in differ[:SHOWN_KEYS])
        found.append(f"{name}: {len(differ)} flagged row(s) differ from the target: {shown}")
    if final and pending:
        found.append(
            f"{name}: {len(pending)} row(s) neither synced nor quarantined after the final run: {_keys(pending)}"
        )
    orphans = sorted(set(targets) - all_source_keys)
    if orphans:
        found.append(f"{name}: {len(orphans)} target row(s) without a source row: {_keys(orphans)}")
    found += _duplicates(target, mapping)
    if final:
        found += _tombstones(pair, source, target, mapping, all_source_keys, set(open_errors))
    return found


def _tombstones(pair: ZonePair, source: Engine, target: Engine, mapping: SyncMapping, live: set[Key],
                quarantined: set[Key]) -> list[str]:  # fmt: skip
    """Deletes carried: none pending unless refused (quarantined); no archived copy of a row that still lives."""
    found = []
    if "sync_tombstone" in sa.inspect(source).get_table_names():
        pending = [row for row in rows(source, "sync_tombstone") if row["mapping"] == mapping.name
                   and not row["is_sync"]]  # fmt: skip
        keys = {_tombstone_key(row, mapping) for row in pending} - quarantined
        if keys:
            found.append(
                f"{mapping.name}: {len(keys)} delete(s) still pending after the final run: {_keys(sorted(keys))}"
            )
    archive = mapping.archive_table_name
    if mapping.on_delete == "archive" and archive in sa.inspect(target).get_table_names():
        alive = sorted({tuple(row[k] for k in mapping.keys) for row in rows(target, archive)} & live)
        if alive:
            found.append(
                f"{mapping.name}: {len(alive)} archived copy(ies) of rows the source still holds: {_keys(alive)}"
            )
    return found


def _tombstone_key(row: dict[str, Any], mapping: SyncMapping) -> Key:
    values = json.loads(row["record_key"])
    return tuple(values[column.source] for column in mapping.key_columns)


def _difference(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    parts = [f"{c} source={expected[c]!s} target={actual.get(c)!s}" for c in expected if expected[c] != actual.get(c)]
    return ", ".join(parts)


def _keys(keys: list[Key]) -> str:
    shown = ", ".join(str(key[0] if len(key) == 1 else key) for key in keys[:SHOWN_KEYS])
    return shown + (f" … (+{len(keys) - SHOWN_KEYS})" if len(keys) > SHOWN_KEYS else "")


def _duplicates(target: Engine, mapping: SyncMapping) -> list[str]:
    counts = Counter(tuple(row[k] for k in mapping.keys) for row in rows(target, mapping.target_table))
    doubled = sorted(key for key, count in counts.items() if count > 1)
    return [f"{mapping.name}: duplicate key(s) in the target: {_keys(doubled)}"] if doubled else []


def check_ledger(pair: ZonePair, mappings: list[SyncMapping], baseline: Baseline, *, jobs_only: bool) -> list[str]:
    """Rule 3: the drill's batch_job rows are finished; with `jobs_only`, rows_synced counts each flag once."""
    with pair.intranet.connect() as conn:
        jobs = [
            dict(r._mapping) for r in conn.execute(sa.select(batch_job).where(batch_job.c.id > baseline.last_job_id))
        ]
    found = [
        f"batch_job {job['id']} ({job['job_name']}) left {job['status']}"
        + (" (never finished)" if job["status"] == "RUNNING" else " (unknown status)")
        for job in jobs
        if job["status"] not in FINISHED
    ]
    if jobs_only:
        flagged = sum(
            1
            for m in mappings
            for k, v in eligible_rows(pair, m).items()
            if v["__flag"] and k in baseline.unflagged[m.name]
        )
        flagged += deletes_carried(pair, mappings) - baseline.deletes_carried  # a delete carried counts as synced
        counted = sum(int(job["rows_synced"] or 0) for job in jobs)
        if counted != flagged:
            found.append(
                f"ledger: the drill's {len(jobs)} batch_job row(s) count rows_synced={counted}, "
                f"but {flagged} row(s) were flagged by them"
            )
    return found


def check_leftovers(pair: ZonePair) -> list[str]:
    """Rule 4: nothing half-done left after recover: intents, leases, prepared transactions."""
    with pair.intranet.connect() as conn:
        intents = conn.execute(
            sa.select(sync_intent.c.id, sync_intent.c.state, sync_intent.c.transaction_id, sync_intent.c.record_key)
        ).all()
        leases = conn.execute(sa.select(sync_lease.c.name, sync_lease.c.holder)).all()
    found = [f"sync_intent {i.id} {i.record_key} left {i.state}" for i in intents if i.state in ("started", "prepared")]
    found += [f"sync_lease {lease.name!r} left (holder {lease.holder})" for lease in leases]
    ours = {f"zonesync-{i.transaction_id}-{side}" for i in intents for side in "st"}
    for zone, engine in (("intranet", pair.intranet), ("internet", pair.internet)):
        left = sorted(ours & set(prepared_transactions(engine)))
        if left:
            found.append(f"{zone}: {len(left)} prepared transaction(s) left in doubt: {', '.join(left[:SHOWN_KEYS])}")
    return found


def prepared_transactions(engine: Engine) -> list[str]:
    """Ids of the transactions prepared (in doubt) in this database ([] where there are none or none are visible)."""
    if engine.dialect.name == "sqlite":
        return []
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                query = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
                return [str(row[0]) for row in conn.exec_driver_sql(query)]
            return [_text(row._mapping["data"]) for row in conn.exec_driver_sql("XA RECOVER")]
    except sa.exc.DBAPIError:
        return []  # XA RECOVER needs a privilege the zone login may lack: the cleanup (admin) looks again


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(violations: list[str]) -> str:
    """Violations as printable text."""
    return "consistent" if not violations else "\n".join(f"- {line}" for line in violations)
