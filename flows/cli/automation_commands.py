"""`zonesync automations`: install the shipped automations on the Prefect server, with the operator's notification.

Prefect is imported inside the command: `zonesync --help` should not pay for it.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from zonesync.flows.cli.support import console, friendly_errors
from zonesync.schemas.errors import ConfigError

app = typer.Typer(help="The automations zonesync ships: alerts, and zombie runs marked Crashed.", no_args_is_help=True)


@app.command()
@friendly_errors
def install(
    block: Annotated[
        str | None, typer.Option("--block", help="Your notification block, as TYPE/NAME (prefect block ls).")
    ] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="A URL: zonesync makes a webhook block posting {subject, body}.")
    ] = None,
) -> None:
    """Create (or replace) every automation of deployments/automations.yaml on the Prefect server of PREFECT_API_URL;
    each alert notifies through the block given."""
    if (block is None) == (webhook is None):
        raise ConfigError("give one of --block TYPE/NAME (a notification block of yours) or --webhook URL")
    if not os.environ.get("PREFECT_API_URL"):  # else Prefect would start a temporary server and forget them
        raise ConfigError("PREFECT_API_URL is not set: automations live on a Prefect server; start one "
                          "(prefect server start) and set PREFECT_API_URL=http://HOST:4200/api")  # fmt: skip
    from zonesync.tasks.setup.automations import install as install_automations
    from zonesync.tasks.setup.automations import named_block, webhook_block

    target = webhook_block(webhook) if webhook else named_block(str(block))
    table = Table("automation", "when it fires", title="Automations installed")
    for installed in install_automations(target):
        table.add_row(installed.name, installed.action)
    console.print(table)
