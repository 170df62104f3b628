"""The `zonesync` commands. User mistakes print one line and exit non-zero."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.table import Table

from zonesync.flows.cli import schema
from zonesync.flows.cli.schema import schema_state
from zonesync.flows.cli.support import (
    EXIT_CLEAN,
    EXIT_FAILED,
    EXIT_PARTIAL,
    EXIT_USAGE,
    age,
    api_server_options,
    console,
    errors,
    friendly_errors,
    job_exit_code,
    json_object,
    load_records,
    parse_date,
    print_quarantine,
    print_sync_report,
)
from zonesync.schemas.errors import ConfigError
from zonesync.schemas.settings import MAX_BATCH_SIZE

app = typer.Typer(help="Keep database tables in step between the intranet and internet zones.", no_args_is_help=True)
app.add_typer(schema.app, name="schema")
# Commands that create the zones' databases, or open none: every other one needs them to exist.
_NEED_NO_DATABASE = {"init", "demo", "mappings", "api-key"}


@app.callback()
def _zones_exist(context: typer.Context) -> None:
    """Refuse a command whose zone database is not there, rather than create an empty one (one line, exit 2)."""
    from zonesync.schemas.settings import ZONES
    from zonesync.tasks.zones.engines import require_zone_database

    if context.invoked_subcommand in _NEED_NO_DATABASE:
        return
    try:
        for zone in ZONES:
            require_zone_database(zone)
    except ConfigError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


BusinessDate = Annotated[
    str | None, typer.Option("--date", help="Business date, YYYY-MM-DD (default: the day that ended last).")
]
Mappings = Annotated[list[str] | None, typer.Option("--mapping", "-m", help="Only this mapping (repeatable).")]


@app.command()
@friendly_errors
def init(
    triggers: Annotated[
        bool, typer.Option("--triggers", help="Install triggers that enforce the writers' contract on source tables.")
    ] = False,
) -> None:
    """Create the bookkeeping tables and check every mapping against the live databases."""
    from zonesync.schemas.registry import all_mappings
    from zonesync.tasks.bookkeeping.tables import create_bookkeeping
    from zonesync.tasks.setup.inspection import check_mapping
    from zonesync.tasks.setup.triggers import install_writers_trigger
    from zonesync.tasks.zones.engines import describe, get_engine

    registered = all_mappings()  # a mapping module that cannot be imported: one line, before anything is created
    intranet = get_engine("intranet")
    created = create_bookkeeping(intranet)
    console.print(f"bookkeeping tables in {describe(intranet)}: {', '.join(created) or 'already present'}")
    failed = False
    for mapping in registered.values():
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
        if triggers and check.ok:
            line = install_writers_trigger(mapping, get_engine(mapping.source_zone))
            console.print(f"  trigger installed: {line}", highlight=False)
    if failed:
        raise typer.Exit(EXIT_USAGE)


@app.command()
@friendly_errors
def retry(
    mapping: Mappings = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=MAX_BATCH_SIZE, help="Rows per batch.")] = None,
) -> None:
    """Run the cron retry sync now: push every unsynced intranet row to the internet zone.

    Exit code 0: everything synced (or nothing to do); 3: partial (rows quarantined, a mapping failed) or skipped
    (another run holds the job); 1: failed.
    """
    from zonesync.flows.retry_sync import retry_sync
    from zonesync.tasks.prefect_tasks import check_run_settings, require_bookkeeping

    check_run_settings("intranet_to_internet", mapping or None)  # before a Prefect run starts
    require_bookkeeping()
    report = retry_sync(mappings=mapping or None, batch_size=batch_size)
    print_sync_report(report)
    if report.total("quarantined"):
        print_quarantine()
    raise typer.Exit(job_exit_code(report.job_status()))


@app.command()
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


@app.command()
@friendly_errors
def api(
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback unless clients are declared).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    ssl_certfile: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="The certificate's private key (PEM).")] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option("--insecure-no-auth", help="No client keys: anyone who reaches it writes (local development)."),
    ] = False,
) -> None:
    """Serve the HTTP entry point: POST and PATCH /mappings/{name}/records, GET /health, /docs (OpenAPI)."""
    import uvicorn

    from zonesync.schemas.api_clients import declared_clients
    from zonesync.schemas.registry import all_mappings
    from zonesync.schemas.settings import get_settings

    if insecure_no_auth:  # for the app factory, in this process and in each worker's
        os.environ["ZONESYNC_API_INSECURE_NO_AUTH"] = "true"
        get_settings.cache_clear()
    clients = declared_clients(get_settings(), all_mappings())  # a bad mapping or clients file: one line here
    if clients is None and not is_loopback(host):
        raise ConfigError(f"refusing to listen on {host} without authentication: declare clients, or use 127.0.0.1")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("give --ssl-certfile and --ssl-keyfile together")
    scheme = "https" if ssl_certfile else "http"
    tls = "" if ssl_certfile else "; TLS is expected in front of it (a reverse proxy), or pass --ssl-certfile/keyfile"
    who = "anyone (no authentication)" if clients is None else f"{len(clients.by_name)} declared client(s)"
    console.print(f"zonesync API on {scheme}://{host}:{port} for {who}{tls}", highlight=False)
    uvicorn.run(
        "zonesync.deployments.api:create_app", factory=True, host=host, port=port, workers=workers,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None, ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        **api_server_options(),
    )  # fmt: skip


api_keys = typer.Typer(help="Keys of the HTTP API's clients.", no_args_is_help=True)
app.add_typer(api_keys, name="api-key")


@api_keys.command("new")
@friendly_errors
def api_key_new(
    name: Annotated[str, typer.Argument(help="The client's name, e.g. payments-portal.")],
    mapping: Annotated[list[str], typer.Option("--mapping", "-m", help="A mapping it may write (repeatable).")],
    scope: Annotated[str, typer.Option(help="What it may do there: push, update, or push,update.")] = "push",
) -> None:
    """Make a client's key: print it once, and the line that declares the client (only the key's hash)."""
    from zonesync.schemas.api_clients import SCOPES, new_client
    from zonesync.schemas.registry import get_mapping

    wanted = {part.strip() for part in scope.split(",") if part.strip()}
    scopes = frozenset(known for known in SCOPES if known in wanted)
    if not wanted or len(scopes) != len(wanted):
        raise ConfigError(f"--scope {scope!r}: choose from {', '.join(SCOPES)} (comma-separated)")
    for name_of_mapping in mapping:
        get_mapping(name_of_mapping)
    key, line = new_client(name, dict.fromkeys(mapping, scopes))
    console.print(f"Key of client [bold]{name}[/] (shown once: give it to the client, keep no copy):", highlight=False)
    print(key)
    console.print("Add this line to the file ZONESYNC_API_CLIENTS_FILE names, then restart `zonesync api`:")
    print(line)
    console.print("The client sends it as the header: Authorization: Bearer <key>", highlight=False)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
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


@app.command("end-day")
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
        console.print(Markdown(failed.report.summary))
        raise
    console.print(Markdown(report.summary))
    raise typer.Exit(job_exit_code(report.status) if report.ok else EXIT_PARTIAL)


@app.command()
@friendly_errors
def reconcile(business_date: BusinessDate = None, mapping: Mappings = None) -> None:
    """Compare both zones for a business date (counts and sums per group, keys missing or different).

    Exit code 0: the zones agree; 3: they differ.
    """
    from zonesync.schemas.registry import select_mappings
    from zonesync.schemas.settings import get_settings
    from zonesync.tasks.reconcile.compare import reconcile_mapping
    from zonesync.tasks.reconcile.report import reconciliation_markdown
    from zonesync.tasks.reporting.end_day import previous_business_date
    from zonesync.tasks.zones.engines import get_engine

    settings = get_settings()
    day = parse_date(business_date) if business_date else previous_business_date(settings.business_timezone)
    agree = True
    for selected in select_mappings(None, mapping or None):
        source, target = get_engine(selected.source_zone), get_engine(selected.target_zone)
        found = reconcile_mapping(selected, day, source, target, timezone=settings.business_timezone)
        console.print(Markdown(reconciliation_markdown(found)))
        agree &= found.ok
    if not agree:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
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


@app.command()
@friendly_errors
def status() -> None:
    """Unsynced rows per mapping, how long its quarantined rows have waited, when its job last ran, and the last
    batch jobs."""
    from zonesync.flows.retry_sync import FLOW_KEY as RETRY
    from zonesync.schemas.registry import all_mappings
    from zonesync.tasks.bookkeeping import tables as bookkeeping
    from zonesync.tasks.reporting.end_day import JOB_NAME as END_DAY
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
        job_name = RETRY if mapping.direction == "intranet_to_internet" else END_DAY
        table.add_row(
            mapping.name, mapping.direction, str(backlog(mapping, get_engine(mapping.source_zone))),
            str(bookkeeping.count_open_errors(intranet, mapping.name)),
            ago(bookkeeping.oldest_open_error(intranet, mapping.name), "-"),
            f"{job_name}: {ago(bookkeeping.last_finished(intranet, job_name), 'never')}", schema_state(mapping),
        )  # fmt: skip
    console.print(table)
    jobs = Table("id", "job", "business date", "status", "started (UTC)", "eligible", "synced", "failed", title="Jobs")
    for job in bookkeeping.recent_jobs(intranet, limit=5):
        jobs.add_row(
            str(job["id"]), job["job_name"], str(job["business_date"]), job["status"],
            f"{job['started_at']:%Y-%m-%d %H:%M:%S}", str(job["rows_eligible"]), str(job["rows_synced"]),
            str(job["rows_failed"]),
        )  # fmt: skip
    console.print(jobs)


@app.command()
@friendly_errors
def grants(
    zone: Annotated[str | None, typer.Option(help="Only this zone: intranet or internet (default: both).")] = None,
    part: Annotated[
        str, typer.Option("--for", help="Whose privileges: flows (flows, commands, recover) or api (the HTTP API).")
    ] = "flows",
    role: Annotated[
        str | None,
        typer.Option(help="The role (MariaDB: user, or 'user'@'host'); default zonesync, or zonesync_api --for api."),
    ] = None,
) -> None:
    """Print the least privileges the flows or the HTTP API need, as GRANT statements per zone.

    Give the API its own role: it may push and update, not write the batch jobs or resolve quarantined records.
    Run the statements as the tables' owner; `zonesync init` (tables, triggers) runs as the owner too."""
    from zonesync.schemas.registry import all_mappings
    from zonesync.schemas.settings import ZONES
    from zonesync.tasks.setup.grants import PARTS, grant_statements
    from zonesync.tasks.zones.engines import describe, get_engine

    if zone is not None and zone not in ZONES:
        raise ConfigError(f"--zone {zone!r}: choose intranet or internet")
    if part not in PARTS:
        raise ConfigError(f"--for {part!r}: choose flows or api")
    who = role or ("zonesync_api" if part == "api" else "zonesync")
    for name in [z for z in ZONES if zone in (None, z)]:
        engine = get_engine(name)
        print(f"-- the {name} zone ({describe(engine)}), {part} role {who}: run as the tables' owner")
        for statement in grant_statements(name, engine, all_mappings().values(), who, part):
            print(statement)


@app.command()
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


@app.command()
@friendly_errors
def mappings(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the data-mapping tables as Markdown.")] = False,
) -> None:
    """List the registered mappings (or print their data-mapping documentation)."""
    from zonesync.schemas.registry import all_mappings
    from zonesync.tasks.setup.mapping_docs import mappings_markdown

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
    """Run the whole story on the embedded SQLite default: push, retry, update with rollback, end-day check."""
    from zonesync.flows.cli.demo import run_demo
    from zonesync.schemas.settings import ZONES
    from zonesync.tasks.zones.engines import zone_url

    for zone in ZONES:
        url = zone_url(zone)
        if "/.zonesync/" not in (url.database or ""):  # the default files (a server's database has no path)
            raise ConfigError(
                "the demo recreates its tables and runs only on the default SQLite files; "
                f"unset ZONESYNC_{zone.upper()}_URL"
            )
    run = run_demo(console.print)
    for number, report in enumerate(run.retries, start=1):
        print_sync_report(report, title=f"Retry sync, run {number}")
    print_quarantine()
    if run.end_day is not None:
        console.print(Markdown(run.end_day.summary))
    console.print(f"\n{_where_to_see_it()}\nQuarantine, backlog and the batch_job ledger: [bold]zonesync status[/]. "
                  "Reconcile any day: [bold]zonesync reconcile --date 2026-11-25 -m payments[/].")  # fmt: skip


def _where_to_see_it() -> str:
    """Where the demo's runs and artifacts are: the configured Prefect server's UI, or how to have one."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    artifacts = "their artifacts (retry-sync-summary, end-day-summary, end-day-reconciliation)"
    if PREFECT_API_URL.value():
        ui = PREFECT_UI_URL.value() or str(PREFECT_API_URL.value()).removesuffix("/api")
        return f"See the flow runs and {artifacts} in the Prefect UI: {ui}/runs"
    return (
        "The runs went to a temporary Prefect server, gone now. To keep them: run [bold]prefect server start[/], set "
        f"PREFECT_API_URL=http://127.0.0.1:4200/api, run [bold]zonesync demo[/] again and open the flow runs and "
        f"{artifacts}, or read one back with [bold]prefect artifact inspect end-day-summary[/]."
    )


def main() -> None:
    """Console-script entry point: the exit codes of `support.EXIT_*`, a usage error in one line."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        errors.print("aborted")
        sys.exit(EXIT_FAILED)
    except typer.TyperException as exc:  # click's errors, as Typer carries them; a usage error's code is 2
        sys.exit(_usage_error(exc))
    sys.exit(code if isinstance(code, int) else EXIT_CLEAN)


def _usage_error(exc: typer.TyperException) -> int:
    """Say what was wrong in one line (no box), and where the help is. (`zonesync` alone has shown its help.)"""
    if type(exc).__name__ != "NoArgsIsHelpError":
        context = getattr(exc, "ctx", None)
        where = f" (see {context.command_path} --help)" if context is not None else ""
        message = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
        errors.print(f"[red]error:[/] {message}{where}", highlight=False)
    return int(getattr(exc, "exit_code", EXIT_USAGE))
