"""What an operator looks at and repairs: `status`, `audit`, `recover` (`repair_commands`: reconcile and resync).

Each command imports what it runs when it runs (the imports inside the functions): `zonesync --help`, a usage error
or another command loads none of it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from zonesync.flows.cli.schema import schema_state
from zonesync.flows.cli.support import (
    age,
    console,
    friendly_errors,
)
from zonesync.schemas.errors import ConfigError


@friendly_errors
def status() -> None:
    """Unsynced rows per mapping, how long its quarantined rows have waited, when its job last ran, and the last
    batch jobs."""
    from zonesync.schemas.registry import all_mappings
    from zonesync.tasks.bookkeeping import jobs, quarantine
    from zonesync.tasks.bookkeeping import tables as bookkeeping
    from zonesync.tasks.setup.inspection import backlog
    from zonesync.tasks.zones.engines import get_engine

    intranet = get_engine("intranet")
    if missing := bookkeeping.missing_tables(intranet):
        raise ConfigError(f"bookkeeping tables {', '.join(missing)} are missing: run `zonesync init`")
    table = Table("mapping", "direction", "unsynced", "open quarantine", "waiting longest", "its job last ran",
                  "schema", title="Mappings")  # fmt: skip
    now = datetime.now(UTC)

    def ago(moment: datetime | None, otherwise: str) -> str:
        return f"{age(now - moment)} ago" if moment else otherwise

    for mapping in all_mappings().values():
        job_name = jobs.RETRY_SYNC_JOB if mapping.direction == "intranet_to_internet" else jobs.END_DAY_JOB
        table.add_row(
            mapping.name, mapping.direction, str(backlog(mapping, get_engine(mapping.source_zone))),
            str(quarantine.count_open_errors(intranet, mapping.name)),
            ago(quarantine.oldest_open_error(intranet, mapping.name), "-"),
            f"{job_name}: {ago(jobs.last_finished(intranet, job_name), 'never')}", schema_state(mapping),
        )  # fmt: skip
    console.print(table)
    ran = Table("id", "job", "business date", "status", "started (UTC)", "eligible", "synced", "failed", title="Jobs")
    for job in jobs.recent_jobs(intranet, limit=5):
        ran.add_row(
            str(job["id"]), job["job_name"], str(job["business_date"]), job["status"],
            f"{job['started_at']:%Y-%m-%d %H:%M:%S}", str(job["rows_eligible"]), str(job["rows_synced"]),
            str(job["rows_failed"]),
        )  # fmt: skip
    console.print(ran)


@friendly_errors
def audit(
    client: Annotated[str | None, typer.Option(help="Only this client's requests.")] = None,
    mapping: Annotated[str | None, typer.Option("--mapping", "-m", help="Only this mapping.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 50,
) -> None:
    """The HTTP API's audit trail: which client wrote which keys, when, with which outcome."""
    from zonesync.schemas.registry import all_mappings
    from zonesync.tasks.bookkeeping.audit import recent
    from zonesync.tasks.prefect_tasks import require_bookkeeping

    entries = recent(require_bookkeeping(), client=client, mapping=mapping, limit=limit)
    table = Table("at (UTC)", "client", "mapping", "operation", "status", "outcome", "records", "keys",
                  title="API audit trail")  # fmt: skip
    declared = all_mappings()
    for entry in entries:
        keys = json.loads(entry.record_keys)
        if entry.mapping in declared:
            keys = [declared[entry.mapping].shown_key(key) for key in keys]
        shown = ", ".join(json.dumps(key, ensure_ascii=False) for key in keys[:3]) + (" …" if entry.records > 3 else "")
        table.add_row(
            f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.client, entry.mapping, entry.operation, str(entry.status),
            entry.outcome, str(entry.records), shown,
        )  # fmt: skip
    console.print(table if entries else "no API writes recorded")


@friendly_errors
def recover() -> None:
    """Repair updates that a crash left between their two commits, and close the batch_job rows of runs that
    died (the flows do both too, when they start)."""
    from zonesync.tasks.bookkeeping.ledger import close_abandoned
    from zonesync.tasks.update.recovery import recover_intents
    from zonesync.tasks.zones.engines import get_engine

    intranet = get_engine("intranet")
    repaired = recover_intents(intranet)
    closed = close_abandoned(intranet)
    for line in [*repaired, *closed]:
        console.print(line, highlight=False)
    console.print(f"{len(repaired)} interrupted update(s) repaired, {len(closed)} abandoned batch job(s) closed")
