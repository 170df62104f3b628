"""The `zonesync` command line (DESIGN §5). User mistakes print one line and exit non-zero."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from tasks.errors import ConfigError, SyncError, translate

app = typer.Typer(help="Keep database tables in step between the intranet and internet zones.", no_args_is_help=True)
console = Console(width=max(120, Console().width))
errors = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(command: F) -> F:
    """Turn zonesync and database errors into one red line and exit code 2 (config) or 1 (sync)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SQLAlchemyError as exc:
            errors.print(f"[red]error:[/] {translate(exc, what='database access')}")
            raise typer.Exit(1) from None
        except SyncError as exc:
            errors.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2 if isinstance(exc, ConfigError) else 1) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@friendly_errors
def init() -> None:
    """Create the bookkeeping tables and check every mapping against the live databases."""
    from schemas.registry import all_mappings
    from tasks.bookkeeping import create_bookkeeping
    from tasks.engines import describe, get_engine
    from tasks.inspect import check_mapping

    intranet = get_engine("intranet")
    created = create_bookkeeping(intranet)
    console.print(f"bookkeeping tables in {describe(intranet)}: {', '.join(created) or 'already present'}")
    failed = False
    for mapping in all_mappings().values():
        check = check_mapping(mapping, get_engine(mapping.source_zone), get_engine(mapping.target_zone))
        failed |= not check.ok
        status = "[green]ok[/]" if check.ok else "[red]cannot run[/]"
        console.print(f"mapping [bold]{mapping.name}[/] ({mapping.direction}): {status}")
        for problem in check.problems:
            console.print(f"  [red]problem:[/] {problem}")
        for warning in check.warnings:
            console.print(f"  [yellow]warning:[/] {warning}")
        if check.advice:
            console.print(f"  recommended in the {mapping.source_zone} zone (fast backlog reads, cheap flagging):")
            for statement in check.advice:
                console.print(f"    {statement}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


@app.command()
@friendly_errors
def retry(
    mapping: Annotated[
        list[str] | None, typer.Option("--mapping", "-m", help="Only this mapping (repeatable).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Rows per batch.")] = None,
) -> None:
    """Run the cron retry sync now: push every unsynced intranet row to the internet zone."""
    from flows.retry_sync import retry_sync
    from tasks.steps import check_run_settings

    check_run_settings("intranet_to_internet", mapping or None)  # before a Prefect run starts
    report = retry_sync(mappings=mapping or None, batch_size=batch_size)
    print_sync_report(report)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def push(
    mapping: Annotated[str, typer.Argument(help="The mapping to push through, e.g. merchants.")],
    records: Annotated[
        str | None, typer.Option("--json", help="One record (object) or several (array), as JSON.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", exists=True, dir_okay=False, help="Read the JSON from a file.")
    ] = None,
) -> None:
    """Real-time push: insert records in the source zone and push them to the target now.

    Exit code 0: in both zones; 3: pending (the target refused or failed; the cron retry carries them);
    1: refused by the source, nothing written.
    """
    from flows.realtime_push import realtime_push
    from schemas.registry import get_mapping

    get_mapping(mapping)
    result = realtime_push(mapping, load_records(records, file))
    table = Table("key", "status", "reason", "detail", title=f"Push through {mapping}: {result.status}")
    for outcome in result.outcomes:
        table.add_row(json.dumps(outcome.key, default=str), outcome.status, outcome.reason, outcome.detail)
    console.print(table)
    console.print(result.message, highlight=False)
    if result.status != "success":
        raise typer.Exit(3 if result.status == "pending" else 1)


def load_records(text: str | None, file: Path | None) -> list[dict[str, Any]]:
    """Records from --json or --file; numbers are read as exact decimals, never floats."""
    if (text is None) == (file is None):
        raise ConfigError("give the records with exactly one of --json or --file")
    raw = file.read_text(encoding="utf-8") if file is not None else text or ""
    try:
        parsed = json.loads(raw, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the records are not valid JSON: {exc}") from None
    return parsed if isinstance(parsed, list) else [parsed]


@app.command()
@friendly_errors
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the HTTP entry point: POST /mappings/{name}/records (push), GET /health, /docs (OpenAPI)."""
    import uvicorn

    from schemas.registry import all_mappings

    all_mappings()  # a bad mapping module is one clear line here, not a traceback in the server
    uvicorn.run("deployments.api:create_app", factory=True, host=host, port=port, workers=workers)


@app.command()
@friendly_errors
def update(
    mapping: Annotated[str, typer.Argument(help="The mapping of the record, e.g. merchants.")],
    key: Annotated[str, typer.Option("--key", help="The key, as JSON: '{\"merchant_id\": 7}'.")],
    changes: Annotated[str, typer.Option("--changes", help='The changes, as JSON: \'{"fee": "2.75"}\'.')],
) -> None:
    """Update with rollback: change a record in both zones, or in neither. Exit code 1 when rolled back."""
    from flows.update_with_rollback import update_with_rollback
    from schemas.registry import get_mapping

    get_mapping(mapping)
    result = update_with_rollback(mapping, _json_object(key, "--key"), _json_object(changes, "--changes"))
    colour = "green" if result.status == "success" else "red"
    console.print(
        f"[{colour}]{result.status}[/] {json.dumps(result.key, default=str)}: {result.message}", highlight=False
    )
    if result.status != "success":
        raise typer.Exit(1)


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} must be a JSON object")
    return value


@app.command()
@friendly_errors
def recover() -> None:
    """Repair updates that a crash left between their two commits (the flows do this too, when they start)."""
    from tasks.engines import get_engine
    from tasks.update import recover as recover_intents

    repaired = recover_intents(get_engine("intranet"))
    for line in repaired:
        console.print(line, highlight=False)
    console.print(f"{len(repaired)} interrupted update(s) repaired")


@app.command()
@friendly_errors
def status() -> None:
    """Unsynced rows and their age per mapping, open quarantine, and the last batch jobs."""
    from schemas.registry import all_mappings
    from tasks.bookkeeping import count_open_errors, missing_tables, recent_jobs
    from tasks.engines import get_engine
    from tasks.inspect import backlog

    intranet = get_engine("intranet")
    if missing := missing_tables(intranet):
        raise ConfigError(f"bookkeeping tables {', '.join(missing)} are missing: run `zonesync init`")
    table = Table("mapping", "direction", "unsynced", "oldest unsynced", "open quarantine", title="Mappings")
    now = datetime.now(UTC)
    for mapping in all_mappings().values():
        pending = backlog(mapping, get_engine(mapping.source_zone))
        age = f"{_age(now - pending.oldest)} ago" if pending.oldest else "-"
        table.add_row(
            mapping.name, mapping.direction, str(pending.unsynced), age, str(count_open_errors(intranet, mapping.name))
        )
    console.print(table)
    jobs = Table("id", "job", "business date", "status", "started (UTC)", "eligible", "synced", "failed", title="Jobs")
    for job in recent_jobs(intranet, limit=5):
        jobs.add_row(
            str(job["id"]), job["job_name"], str(job["business_date"]), job["status"],
            f"{job['started_at']:%Y-%m-%d %H:%M:%S}", str(job["rows_eligible"]), str(job["rows_synced"]),
            str(job["rows_failed"]),
        )  # fmt: skip
    console.print(jobs)


def _age(delta: Any) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@app.command()
@friendly_errors
def mappings(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the data-mapping tables as Markdown.")] = False,
) -> None:
    """List the registered mappings (or print their data-mapping documentation)."""
    from schemas.registry import all_mappings
    from tasks.docs import mappings_markdown

    registered = all_mappings()
    if markdown:
        print(mappings_markdown(registered.values()), end="")
        return
    table = Table("name", "direction", "source table", "target table", "keys", "columns")
    for m in registered.values():
        table.add_row(m.name, m.direction, m.source_table, m.target_table, ", ".join(m.keys), str(len(m.columns)))
    console.print(table)


@app.command()
@friendly_errors
def demo() -> None:
    """Run the demo on the embedded SQLite default: seed, sync, quarantine, fix, sync again."""
    from flows.demo import run_demo
    from schemas.settings import ZONES
    from tasks.engines import zone_url

    for zone in ZONES:
        url = zone_url(zone)
        if url.get_backend_name() != "sqlite" or "/.zonesync/" not in (url.database or ""):
            raise ConfigError(
                "the demo recreates its tables and runs only on the default SQLite files; "
                f"unset ZONESYNC_{zone.upper()}_URL"
            )
    reports = run_demo(console.print)
    for number, report in enumerate(reports, start=1):
        print_sync_report(report, title=f"Retry sync, run {number}")
    print_quarantine()
    console.print(
        "\nSee it in the Prefect UI: run [bold]prefect server start[/], set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api, run [bold]zonesync demo[/] again and open the flow runs and "
        "artifacts (retry-sync-summary, retry-sync-report).\nQuarantine and backlog: [bold]zonesync status[/]."
    )


def print_sync_report(report: Any, title: str = "Retry sync") -> None:
    """A sync report as a table, with error messages below it."""
    columns = ("read", "upserted", "flagged", "quarantined", "changed_in_flight")
    table = Table("mapping", "status", "read", "upserted", "flagged", "quarantined", "changed", "seconds", title=title)
    for r in report.mappings:
        table.add_row(r.mapping, r.status, *(str(getattr(r, c)) for c in columns), f"{r.seconds:.2f}")
    console.print(table)
    for r in report.mappings:
        if r.message:
            errors.print(f"[red]{r.mapping}:[/] {r.message}")


def print_quarantine(limit: int = 20) -> None:
    """The open quarantine (sync_error rows not resolved yet), newest first."""
    from schemas.registry import all_mappings
    from tasks.bookkeeping import open_errors
    from tasks.engines import get_engine

    table = Table("mapping", "record key", "reason", "detail", "attempts", title="Open quarantine (sync_error)")
    for row in open_errors(get_engine("intranet"), list(all_mappings()), limit=limit):
        table.add_row(row["mapping"], row["record_key"], row["reason"], row["detail"], str(row["attempts"]))
    console.print(table)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    app()


if __name__ == "__main__":
    main()
