"""The scale-out benchmark's databases: set up (with the index `zonesync init` advises), reset, read the
bookkeeping, and verify a run. Nothing here is timed; the pair itself is `bench/database.py`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from bench import database
from bench.database import DatabasePair
from zonesync.schemas.mapping import SyncMapping

BOOKKEEPING_RESET = ("batch_job", "sync_lease", "sync_error")
CLEAN_STATUSES = ("success", "skipped", "no_record")  # no_record: a late run that found its partitions done


def set_up(pair: DatabasePair, mapping: SyncMapping, warm_up: SyncMapping, rows: int) -> dict[str, Any]:
    """Both databases from scratch: the tables, the pending and partition indexes `zonesync init` advises, `rows`
    generated rows, one flag round trip (every run then meets the same updated-before heap) and an empty
    warm-up table."""
    database.recreate_databases(pair)
    pending = database.create_tables(pair, mapping, pending_index=True)
    partition = create_partition_index(pair, mapping)
    database.create_tables(pair, warm_up, pending_index=True)
    database.generate_rows(pair, mapping, rows)
    database.flag_all(pair, mapping)
    database.reset_full(pair, mapping)
    return {"pending_index_ddl": pending, "partition_index_ddl": partition,
            "table_bytes_after_setup": database.table_bytes(pair, mapping)}  # fmt: skip


def create_partition_index(pair: DatabasePair, mapping: SyncMapping) -> str | None:
    """The expression index on (partition number, key) for pending rows, as `zonesync init` prints it
    (`tasks/setup/inspection.py`): each partition's pending rows are one index range."""
    from zonesync.tasks.sync.partitions import partition_number
    from zonesync.tasks.zones.engines import create_engine, installing_for, reconciling_for

    if mapping.partitions == 1:
        return None  # init advises it for partitioned mappings only
    engine = create_engine(pair.url(pair.source_db))
    try:
        table = database.source_table(mapping)
        number = partition_number(reconciling_for(engine), table, mapping)
        ddl = installing_for(engine).partition_index(table, number, mapping.source_keys, mapping.flag_column)
    finally:
        engine.dispose()
    if ddl:
        with pair.connect(pair.source_db) as conn:  # as printed: psycopg without parameters takes '%' as written
            conn.execute(ddl.encode())
    return ddl


def reset(pair: DatabasePair, mapping: SyncMapping) -> None:
    """The start state of every measured run: target empty, every row unsynced, no job, lease or error row."""
    with pair.connect(pair.source_db) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, BOOKKEEPING_RESET))))
    database.reset_full(pair, mapping)


def last_job_id(pair: DatabasePair) -> int:
    """The newest batch_job id (0: none): the measured run's rows are the ones after it."""
    with pair.connect(pair.source_db) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM batch_job").fetchone()[0])  # type: ignore[index]


def jobs_after(pair: DatabasePair, after: int) -> dict[int, dict[str, Any]]:
    """The batch_job rows after id `after`, by id."""
    query = "SELECT id, status, rows_synced, rows_failed, message FROM batch_job WHERE id > %s ORDER BY id"
    with pair.connect(pair.source_db) as conn:
        rows = conn.execute(query, (after,)).fetchall()
    return {int(row[0]): {"status": row[1], "rows_synced": int(row[2]), "rows_failed": int(row[3]),
                          "message": row[4]} for row in rows}  # fmt: skip


def synced_after(pair: DatabasePair, after: int) -> int:
    """Rows counted synced so far by the batch_job rows after id `after` (each batch counts as it commits)."""
    with pair.connect(pair.source_db) as conn:
        found = conn.execute("SELECT coalesce(sum(rows_synced), 0) FROM batch_job WHERE id > %s", (after,))
        return int(found.fetchone()[0])  # type: ignore[index]


def sessions(pair: DatabasePair) -> int:
    """Connections opened so far to the two zones' databases (pg_stat_database.sessions, PostgreSQL 14+)."""
    with pair.connect(pair.source_db) as conn:
        found = conn.execute("SELECT coalesce(sum(sessions), 0) FROM pg_stat_database WHERE datname = ANY(%s)",
                             ([pair.source_db, pair.target_db],))  # fmt: skip
        return int(found.fetchone()[0])  # type: ignore[index]


def pending_in_partitions(pair: DatabasePair, mapping: SyncMapping, leases: Sequence[str]) -> int:
    """Unsynced rows in the partitions of these leases (`mapping:<name>:partition:<i>-of-<n>`), selected by
    zonesync's own partition expression (so the partition index serves it)."""
    import sqlalchemy as sa

    from zonesync.tasks.sync.partitions import Partition, in_partition
    from zonesync.tasks.zones.engines import create_engine, reconciling_for

    table = database.source_table(mapping)
    numbers = [int(name.rsplit(":", 1)[1].split("-of-")[0]) - 1 for name in leases]
    engine = create_engine(pair.url(pair.source_db))
    try:
        chosen = sa.or_(*(in_partition(reconciling_for(engine), table, mapping, Partition(number, mapping.partitions))
                          for number in numbers))  # fmt: skip
        query = sa.select(sa.func.count()).select_from(table).where(table.c[mapping.flag_column].is_not(True), chosen)
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def partition_leases(pair: DatabasePair, mapping: SyncMapping) -> dict[str, str]:
    """The partition leases held now: lease name -> holder (host:pid:nonce)."""
    with pair.connect(pair.source_db) as conn:
        rows = conn.execute("SELECT name, holder FROM sync_lease WHERE name LIKE %s", (f"mapping:{mapping.name}:%",))
        return {str(name): str(holder) for name, holder in rows.fetchall()}


@dataclass
class RunCheck:
    """What verifying one run found: problems (none: verified) and the figures checked."""

    problems: list[str]
    figures: dict[str, Any]


def verify_run(
    pair: DatabasePair,
    mapping: SyncMapping,
    rows: int,
    reports: Sequence[dict[str, Any]],
    jobs: dict[int, Any],
    lost_jobs: Sequence[int] = (),
) -> RunCheck:
    """Target equal to the source projection (count and order-independent hash), nothing unflagged, each row
    flagged exactly once (the workers' flagged counts, plus the ledger's count for killed workers in `lost_jobs`,
    sum to the rows), the ledger exact (rows_synced sums to the rows, each worker's row equals its report)."""
    check = database.verify(pair, mapping)
    problems = [] if check.ok else [f"zones differ: {check}"]
    flagged = sum(int(report.get("flagged", 0)) for report in reports)
    flagged += sum(jobs[job]["rows_synced"] for job in lost_jobs if job in jobs)
    ledger = sum(job["rows_synced"] for job in jobs.values())
    if flagged != rows:
        problems.append(f"the workers flagged {flagged:,} rows in all, expected {rows:,}")
    if ledger != rows:
        problems.append(f"batch_job rows_synced sum to {ledger:,}, expected {rows:,}")
    for report in reports:
        job = jobs.get(report.get("job_id", -1))
        if job is None or job["rows_synced"] != report.get("flagged"):
            problems.append(f"worker {report.get('pid')}: flagged {report.get('flagged')}, its batch_job row {job}")
        if report.get("status") not in CLEAN_STATUSES or report.get("quarantined"):
            problems.append(f"worker {report.get('pid')}: {report.get('status')} {report.get('message')}")
    if failed := sum(job["rows_failed"] for job in jobs.values()):
        problems.append(f"{failed} rows quarantined")
    figures = {"target_rows": check.target.rows, "unsynced": check.unsynced, "flagged_by_workers": flagged,
               "ledger_rows_synced": ledger, "batch_job_rows": len(jobs)}  # fmt: skip
    return RunCheck(problems, figures)
