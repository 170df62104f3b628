"""What the `zonesync` commands share: consoles, one-line errors, options, JSON input, report printing.

Imported by every command at start-up, so it imports no database, Prefect or dataframe code at module level:
what a function needs beyond typer and rich, it imports when it runs.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from zonesync.schemas.errors import ConfigError, SyncError

console = Console(width=max(120, Console().width))
errors = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


# The exit codes of every command (the README has the table).
EXIT_CLEAN = 0  # done, nothing left over
EXIT_FAILED = 1  # the work failed, or was refused (a rolled-back update, a push the source refused)
EXIT_USAGE = 2  # a mistake in the command, its options or the settings: nothing was done
EXIT_PARTIAL = 3  # done in part: rows quarantined or pending, zones that differ, a run skipped
_JOB_EXIT_CODES = {"SUCCESS": EXIT_CLEAN, "NO_RECORD": EXIT_CLEAN, "PARTIAL": EXIT_PARTIAL, "SKIPPED": EXIT_PARTIAL}


BusinessDate = Annotated[
    str | None, typer.Option("--date", help="Business date, YYYY-MM-DD (default: the day that ended last).")
]
Mappings = Annotated[list[str] | None, typer.Option("--mapping", "-m", help="Only this mapping (repeatable).")]


def _at_most_max_batch_size(value: int | None) -> int | None:
    from zonesync.schemas.settings import MAX_BATCH_SIZE  # read when the option is given, not at start-up

    if value is not None and value > MAX_BATCH_SIZE:
        raise typer.BadParameter(f"{value} is more than {MAX_BATCH_SIZE:,} rows")
    return value


BatchSizeOption = Annotated[int | None, typer.Option(min=1, callback=_at_most_max_batch_size, help="Rows per batch.")]


def job_exit_code(status: str) -> int:
    """The exit code of a run whose batch_job status is `status`."""
    return _JOB_EXIT_CODES.get(status, EXIT_FAILED)


def friendly_errors(command: F) -> F:
    """Turn zonesync and database errors into one red line and exit code 2 (config) or 1 (sync)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SyncError as exc:
            errors.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED) from None
        except Exception as exc:
            if _prefect_server_not_started(exc):
                errors.print(f"[red]error:[/] {_prefect_server_not_started_advice()}")
                raise typer.Exit(EXIT_FAILED) from None
            if not _database_error(exc):
                raise
            from zonesync.tasks.zones.failures import translate

            errors.print(f"[red]error:[/] {translate(exc, what='database access')}")
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _prefect_server_not_started(exc: Exception) -> bool:
    """Prefect gave up waiting for the temporary server it starts when PREFECT_API_URL is not set (its one sign)."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("Timed out while attempting to connect to ephemeral")


def _prefect_server_not_started_advice() -> str:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    return (
        f"the temporary Prefect server did not start within {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()}"
        " s (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS): give it longer on a busy machine, or start one "
        "(prefect server start) and set PREFECT_API_URL=http://127.0.0.1:4200/api"
    )


def _database_error(exc: Exception) -> bool:
    """An SQLAlchemy error (only a command that loaded SQLAlchemy can raise one: it is not imported to tell)."""
    loaded = sys.modules.get("sqlalchemy.exc")
    return loaded is not None and isinstance(exc, loaded.SQLAlchemyError)


def zone_databases_must_exist(command: F) -> F:
    """Refuse the command when a zone's database is not there, rather than create an empty one (one line, exit 2).
    Checked once the command's arguments are parsed: a usage mistake loads no database code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from zonesync.schemas.settings import ZONES
        from zonesync.tasks.zones.engines import require_zone_database

        try:
            for zone in ZONES:
                require_zone_database(zone)
        except ConfigError as exc:
            errors.print(f"[red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_USAGE) from None
        return command(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def load_records(text: str | None, file: Path | None) -> list[dict[str, Any]]:
    """Records from --json or --file; numbers are read as exact decimals, never floats."""
    if (text is None) == (file is None):
        raise ConfigError("give the records with exactly one of --json or --file")
    try:
        raw = file.read_text(encoding="utf-8") if file is not None else text or ""
    except OSError as exc:
        raise ConfigError(f"cannot read --file {file}: {exc.strerror}") from None
    parsed = parse_json(raw, "the records")
    records = parsed if isinstance(parsed, list) else [parsed]
    if not records or not all(isinstance(record, dict) for record in records):
        raise ConfigError("the records must be a JSON object, or a non-empty array of objects")
    return records


def parse_date(text: str) -> date:
    """A --date value (YYYY-MM-DD)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--date {text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-25") from None


def parse_json(text: str, what: str) -> Any:
    """JSON with exact decimals (`tasks.records.parse_json`); a problem is one clear line."""
    from zonesync.tasks.push.records import parse_json as parse

    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None


def json_object(text: str, option: str) -> dict[str, Any]:
    value = parse_json(text, option)
    if not isinstance(value, dict):
        raise ConfigError(f"{option} must be a JSON object")
    return value


def age(delta: Any) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def print_markdown(text: str) -> None:
    """A Markdown report (the end-day summary, a reconciliation) on the console."""
    from rich.markdown import Markdown

    console.print(Markdown(text))


def print_sync_report(report: Any, title: str = "Retry sync") -> None:
    """A sync report as a table, with error messages below it."""
    columns = ("read", "upserted", "flagged", "quarantined", "changed_in_flight")
    table = Table("mapping", "status", "read", "upserted", "flagged", "quarantined", "changed", "deletes", "seconds",
                  title=title)  # fmt: skip
    for r in report.mappings:
        deletes = r.deletes_line() if r.deletes else "0"
        table.add_row(r.mapping, r.status, *(str(getattr(r, c)) for c in columns), deletes, f"{r.seconds:.2f}")
    console.print(table)
    for r in report.mappings:
        if r.message:
            errors.print(f"[red]{r.mapping}:[/] {r.message}")


def print_quarantine(limit: int = 20) -> None:
    """The open quarantine (sync_error rows not resolved yet), newest first."""
    from zonesync.schemas.registry import all_mappings
    from zonesync.tasks.bookkeeping.quarantine import open_errors
    from zonesync.tasks.zones.engines import get_engine

    table = Table("mapping", "record key", "reason", "detail", "attempts", title="Open quarantine (sync_error)")
    declared = all_mappings()
    for row in open_errors(get_engine("intranet"), list(declared), limit=limit):
        key = declared[row["mapping"]].shown_record_key(row["record_key"])
        table.add_row(row["mapping"], key, row["reason"], row["detail"], str(row["attempts"]))
    console.print(table)


def api_server_options() -> dict[str, Any]:
    """uvicorn's options for `zonesync api`: the protocol with time limits and the access log filter of
    `deployments/server.py` (named by import path: the command line stands below the deployments layer), and the
    connection cap."""
    from uvicorn.config import LOGGING_CONFIG

    from zonesync.schemas.settings import get_settings

    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config.setdefault("filters", {})["bounded_access_line"] = {
        "()": "zonesync.deployments.server.BoundedAccessLine"
    }
    log_config["handlers"]["access"]["filters"] = ["bounded_access_line"]
    return {"http": "zonesync.deployments.server:TimedHttpTools",
            "limit_concurrency": get_settings().api_max_connections, "log_config": log_config}  # fmt: skip
