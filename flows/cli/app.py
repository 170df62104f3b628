"""The `zonesync` command: its command table, the check that the zones' databases exist, and the entry point that
turns usage errors into one line and results into exit codes (`support.EXIT_*`).
"""

from __future__ import annotations

import os
import sys

import typer

from zonesync.flows.cli import (
    api_commands,
    automation_commands,
    flow_commands,
    operator_commands,
    repair_commands,
    schema,
    setup_commands,
)
from zonesync.flows.cli.support import EXIT_CLEAN, EXIT_FAILED, EXIT_USAGE, errors, zone_databases_must_exist

EPHEMERAL_SERVER_STARTUP_SECONDS = 120
# Commands that create the zones' databases, or open none: every other one needs them to exist.
_NEED_NO_DATABASE = {"init", "demo", "mappings", "budget"}
app = typer.Typer(help="Keep database tables in step between the intranet and internet zones.", no_args_is_help=True)
# The command table, in the order `zonesync --help` lists it.
for command, name in (
    (setup_commands.init, "init"),
    (setup_commands.demo, "demo"),
    (flow_commands.retry, "retry"),
    (flow_commands.push, "push"),
    (flow_commands.update, "update"),
    (flow_commands.delete, "delete"),
    (flow_commands.end_day, "end-day"),
    (repair_commands.reconcile, "reconcile"),
    (repair_commands.resync, "resync"),
    (operator_commands.recover, "recover"),
    (operator_commands.status, "status"),
    (operator_commands.audit, "audit"),
    (setup_commands.grants, "grants"),
    (setup_commands.budget, "budget"),
    (setup_commands.mappings, "mappings"),
    (api_commands.api, "api"),
):
    app.command(name)(command if name in _NEED_NO_DATABASE else zone_databases_must_exist(command))
app.add_typer(schema.app, name="schema")
app.add_typer(automation_commands.app, name="automations")
app.add_typer(api_commands.api_keys, name="api-key")
api_commands.api_keys.command("new")(api_commands.api_key_new)


def main() -> None:
    """Console-script entry point: the exit codes of `support.EXIT_*`, a usage error in one line."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Without PREFECT_API_URL a flow starts a temporary Prefect server, which Prefect waits 20 s for: 10-14 s on a
    # fresh PREFECT_HOME, and more on a busy machine (a CI run's demo, after the tests, timed out).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_SERVER_STARTUP_SECONDS))
    try:
        code = app(standalone_mode=False, prog_name="zonesync")  # also when run as `python -m zonesync.flows.cli`
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
