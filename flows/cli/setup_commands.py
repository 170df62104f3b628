"""Setting zonesync up: `init`, `grants`, `mappings` and the `demo`.

Each command imports what it runs when it runs (the imports inside the functions): `zonesync --help`, a usage error
or another command loads none of it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zonesync.flows.cli.support import (
    EXIT_USAGE,
    console,
    friendly_errors,
    print_markdown,
    print_quarantine,
    print_sync_report,
)
from zonesync.schemas.errors import ConfigError


@friendly_errors
def init(
    triggers: Annotated[
        bool,
        typer.Option(
            "--triggers",
            help="Install triggers on source tables: the writers' contract, and the capture of deleted rows.",
        ),
    ] = False,
) -> None:
    """Create the bookkeeping tables and check every mapping against the live databases."""
    from zonesync.schemas.registry import all_mappings
    from zonesync.tasks.bookkeeping.tables import create_bookkeeping
    from zonesync.tasks.setup.inspection import check_mapping
    from zonesync.tasks.setup.triggers import (
        install_delete_capture,
        install_writers_trigger,
        writers_contract_enforced,
    )
    from zonesync.tasks.zones.engines import describe, get_engine

    registered = all_mappings()  # a mapping module that cannot be imported: one line, before anything is created
    _own_mappings_need_own_zones()
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
            for line in (install_writers_trigger(mapping, get_engine(mapping.source_zone)),
                         install_delete_capture(mapping, get_engine(mapping.source_zone))):  # fmt: skip
                console.print(f"  trigger installed: {line}", highlight=False, soft_wrap=True)
        elif check.ok and not writers_contract_enforced(mapping, get_engine(mapping.source_zone)):
            console.print(f"  [yellow]writers' contract not enforced:[/] no trigger on {mapping.source_table}: a row "
                          f"changed while {mapping.flag_column} stays true is never sent again. `zonesync init "
                          "--triggers` enforces it; the reconcile-zones deployment finds such rows.",
                          highlight=False, soft_wrap=True)  # fmt: skip
    if failed:
        raise typer.Exit(EXIT_USAGE)


def _own_mappings_need_own_zones() -> None:
    """Mappings of one's own against the demo's SQLite files (a zone URL left unset) fail table by table: say so in
    one line before anything is created there."""
    from zonesync.schemas.settings import ZONES, Settings, get_settings

    settings = get_settings()
    demo_modules = Settings.model_fields["mapping_modules"].get_default(call_default_factory=True)
    unset = [f"ZONESYNC_{zone.upper()}_URL" for zone in ZONES if f"{zone}_url" not in settings.model_fields_set]
    if unset and settings.mapping_modules != demo_modules:
        raise ConfigError(
            f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set: your mappings "
            f"({', '.join(settings.mapping_modules)}) would be checked against the demo's SQLite files in .zonesync/; "
            "set the zones' URLs to your databases (docs/own-databases.md)"
        )


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


@friendly_errors
def budget(
    intranet: Annotated[int | None, typer.Option(min=1, help="Connections for the intranet zone.")] = None,
    internet: Annotated[int | None, typer.Option(min=1, help="Connections for the internet zone.")] = None,
) -> None:
    """Show (or set) each zone's connection budget: how many connections zonesync's carriers may hold at once,
    across every worker and run, kept by Prefect as a global concurrency limit per zone."""
    from zonesync.tasks.zones.budget import budget_limit, read_budgets, set_budget

    if intranet is not None:
        set_budget("intranet", intranet)
    if internet is not None:
        set_budget("internet", internet)
    table = Table("zone", "Prefect limit", "connections", "held now", title="Connection budget")
    for found in read_budgets():
        limit = str(found.limit) if found.limit is not None else "none: not limited"
        table.add_row(found.zone, budget_limit(found.zone), limit, str(found.taken))
    console.print(table)


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
        print_markdown(run.end_day.summary)
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
