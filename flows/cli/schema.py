"""`zonesync schema`: the accepted shape of each mapping's tables beside the live one, and accepting a change.

A breaking change (a mapped column narrowed, dropped or renamed, a key changed) stops the mapping until it is
undone or accepted here; what was accepted, by whom and when is kept in the intranet zone (`sync_schema`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from zonesync.flows.cli.support import EXIT_CLEAN, EXIT_PARTIAL, console, friendly_errors, zone_databases_must_exist
from zonesync.schemas.errors import SyncError

if TYPE_CHECKING:  # the declarations import polars and pandera: `zonesync --help` should not pay for them
    from zonesync.schemas.mapping import SyncMapping

app = typer.Typer(help="Show and accept changes of the mapped tables (the schema contract).", no_args_is_help=True)


def schema_state(mapping: SyncMapping) -> str:
    """The schema contract's word on a mapping, for `zonesync status` (`ok`, `N breaking change(s)`, ...)."""
    from zonesync.tasks.schema.contract import schema_report
    from zonesync.tasks.zones.engines import get_engine

    engines = (get_engine("intranet"), get_engine(mapping.source_zone), get_engine(mapping.target_zone))
    try:
        return schema_report(mapping, *engines).state
    except SyncError as exc:
        return f"cannot be read: {exc}"


@app.command()
@zone_databases_must_exist
@friendly_errors
def diff(
    mapping: Annotated[
        list[str] | None, typer.Option("--mapping", "-m", help="Only this mapping (repeatable).")
    ] = None,
) -> None:
    """Compare each mapping's live tables with their accepted shape.

    Exit code 0: no breaking change; 3: a mapping is stopped by a breaking change (accept it or undo it).
    """
    from zonesync.schemas.registry import all_mappings, get_mapping
    from zonesync.tasks.schema.contract import schema_report
    from zonesync.tasks.zones.engines import get_engine

    chosen = [get_mapping(name) for name in mapping] if mapping else list(all_mappings().values())
    broken = False
    for one in chosen:
        report = schema_report(one, get_engine("intranet"), get_engine(one.source_zone), get_engine(one.target_zone))
        broken |= bool(report.comparison.breaking)
        accepted = report.accepted
        when = f", accepted {accepted.accepted_at:%Y-%m-%d %H:%M} UTC by {accepted.accepted_by}" if accepted else ""
        console.print(f"mapping [bold]{one.name}[/]: {report.state}{when}", highlight=False)
        if report.comparison.changes:
            table = Table("verdict", "zone", "table", "column", "accepted", "live", "why")
            for change in report.comparison.changes:
                verdict = "[red]breaking[/]" if change.verdict == "breaking" else "compatible"
                table.add_row(verdict, change.zone, change.table, change.column or "(key)", change.was, change.now,
                              change.why)  # fmt: skip
            console.print(table)
    if broken:
        console.print("accept a change with `zonesync schema accept MAPPING`, or undo it", highlight=False)
    raise typer.Exit(EXIT_PARTIAL if broken else EXIT_CLEAN)


@app.command()
@zone_databases_must_exist
@friendly_errors
def accept(
    mapping: Annotated[str, typer.Argument(help="The mapping whose live tables become its accepted shape.")],
    by: Annotated[str | None, typer.Option("--by", help="Who accepts (default: your login@host).")] = None,
) -> None:
    """Accept a mapping's tables as they are now: the mapping runs with them again (values that its columns would
    alter are still refused or quarantined, never rounded)."""
    from zonesync.schemas.registry import get_mapping
    from zonesync.tasks.schema.contract import accept_live, operator
    from zonesync.tasks.zones.engines import get_engine

    one = get_mapping(mapping)
    engines = (get_engine("intranet"), get_engine(one.source_zone), get_engine(one.target_zone))
    report = accept_live(one, *engines, by=by or operator())
    if report.accepted is not None and not report.comparison.changes:
        console.print(f"mapping [bold]{one.name}[/]: nothing to accept, the live tables are the accepted shape")
        return
    console.print(f"mapping [bold]{one.name}[/]: accepted by {by or operator()}", highlight=False)
    for change in report.comparison.changes:
        console.print(f"  {change.verdict}: {change.line()}", highlight=False)
    if report.unflagged:
        console.print(f"  {report.unflagged} synced row(s) marked unsynced: the change rewrote the rows already "
                      "there, so the next run checks every row against the accepted tables")  # fmt: skip
