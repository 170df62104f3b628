"""The flows run from the command line: `retry`, `push`, `update`, `delete`, `end-day`.

Each command imports what it runs when it runs (the imports inside the functions): `zonesync --help`, a usage error
or another command loads none of it (flows, Prefect, polars, SQLAlchemy, drivers).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from zonesync.flows.cli.support import (
    EXIT_FAILED,
    EXIT_PARTIAL,
    BatchSizeOption,
    BusinessDate,
    Mappings,
    console,
    friendly_errors,
    job_exit_code,
    json_object,
    load_records,
    parse_date,
    print_markdown,
    print_quarantine,
    print_sync_report,
)

if TYPE_CHECKING:
    from zonesync.schemas.settings import FanOut


class FanOutChoice(StrEnum):
    """`--fan-out`: ZONESYNC_FAN_OUT's values."""

    tasks = "tasks"
    work_pool = "work-pool"
    dask = "dask"


@friendly_errors
def retry(
    mapping: Mappings = None,
    batch_size: BatchSizeOption = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Slices per partitioned mapping (ZONESYNC_WORKERS).")
    ] = None,
    fan_out: Annotated[
        FanOutChoice | None,
        typer.Option(help="Where slices run: tasks (threads of this run), work-pool or dask (ZONESYNC_FAN_OUT)."),
    ] = None,
) -> None:
    """Run the cron retry sync now: push every unsynced intranet row to the internet zone.

    Exit code 0: everything synced (or nothing to do); 3: partial (rows quarantined, a mapping failed) or skipped
    (another run holds the job); 1: failed.
    """
    from zonesync.flows.retry_sync import retry_sync
    from zonesync.tasks.prefect_tasks import check_run_settings, require_bookkeeping

    check_run_settings("intranet_to_internet", mapping or None)  # before a Prefect run starts
    require_bookkeeping()
    where = cast("FanOut", fan_out.value) if fan_out else None
    report = retry_sync(mappings=mapping or None, batch_size=batch_size, workers=workers, fan_out=where)
    print_sync_report(report)
    if report.total("quarantined"):
        print_quarantine()
    raise typer.Exit(job_exit_code(report.job_status()))


@friendly_errors
def push(
    mapping: Annotated[str, typer.Argument(help="The mapping to push through, e.g. merchants.")],
    records: Annotated[
        str | None, typer.Option("--json", help="One record (object) or several (array), as JSON.")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Read the JSON from a file.")] = None,
) -> None:
    """Real-time push: insert records in the source zone and push them to the target now.

    Exit code 0: in both zones; 3: pending (the target refused or failed; the cron retry carries them);
    1: refused by the source, nothing written.
    """
    from zonesync.flows.realtime_push import realtime_push
    from zonesync.schemas.registry import get_mapping

    declared = get_mapping(mapping)
    result = realtime_push(mapping, load_records(records, file))
    table = Table("key", "status", "reason", "detail", title=f"Push through {mapping}: {result.status}")
    for outcome in result.outcomes:
        shown = json.dumps(declared.shown_key(outcome.key), default=str)
        table.add_row(shown, outcome.status, outcome.reason, outcome.detail)
    console.print(table)
    console.print(result.message, highlight=False)
    if result.status != "success":
        raise typer.Exit(EXIT_PARTIAL if result.status == "pending" else EXIT_FAILED)


@friendly_errors
def update(
    mapping: Annotated[str, typer.Argument(help="The mapping of the record, e.g. merchants.")],
    key: Annotated[str, typer.Option("--key", help="The key, as JSON: '{\"merchant_id\": 7}'.")],
    changes: Annotated[str, typer.Option("--changes", help='The changes, as JSON: \'{"fee": "2.75"}\'.')],
) -> None:
    """Update with rollback: change a record in both zones, or in neither. Exit code 1 when rolled back."""
    from zonesync.flows.update_with_rollback import update_with_rollback
    from zonesync.schemas.registry import get_mapping

    declared = get_mapping(mapping)
    result = update_with_rollback(mapping, json_object(key, "--key"), json_object(changes, "--changes"))
    colour = "green" if result.status == "success" else "red"
    reason = f" ({result.reason})" if result.reason else ""
    shown = json.dumps(declared.shown_key(result.key), default=str)
    console.print(
        f"[{colour}]{result.status}[/] {shown}: {result.message}{reason}",
        highlight=False,
    )
    if result.status != "success":
        raise typer.Exit(EXIT_FAILED)


@friendly_errors
def delete(
    mapping: Annotated[str, typer.Argument(help="The mapping of the record, e.g. merchants.")],
    key: Annotated[str, typer.Option("--key", help="The key, as JSON: '{\"merchant_id\": 7}'.")],
) -> None:
    """Delete with rollback: remove a record from both zones (the target by the mapping's on_delete), or from
    neither. Exit code 1 when rolled back."""
    from zonesync.flows.delete_with_rollback import delete_with_rollback
    from zonesync.schemas.registry import get_mapping

    declared = get_mapping(mapping)
    result = delete_with_rollback(mapping, json_object(key, "--key"))
    colour = "green" if result.status == "success" else "red"
    reason = f" ({result.reason})" if result.reason else ""
    shown = json.dumps(declared.shown_key(result.key), default=str)
    console.print(f"[{colour}]{result.status}[/] {shown}: {result.message}{reason}", highlight=False)
    if result.status != "success":
        raise typer.Exit(EXIT_FAILED)


@friendly_errors
def end_day(business_date: BusinessDate = None, mapping: Mappings = None) -> None:
    """End-day sync check: bring the day's eligible internet rows back, reconcile both zones, report.

    Exit code 0: success or no record; 3: partial (rows quarantined or zones differ); 1: failed.
    """
    from zonesync.flows.end_day_check import EndDayFailed, end_day_check
    from zonesync.tasks.prefect_tasks import check_run_settings, require_bookkeeping

    day = parse_date(business_date) if business_date else None
    check_run_settings("internet_to_intranet", mapping or None)  # before a Prefect run starts
    require_bookkeeping()
    try:
        report = end_day_check(business_date=day, mappings=mapping or None)
    except EndDayFailed as failed:
        print_markdown(failed.report.summary)
        raise
    print_markdown(report.summary)
    raise typer.Exit(job_exit_code(report.status) if report.ok else EXIT_PARTIAL)
