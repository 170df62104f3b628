"""The HTTP entry point from the command line: `api` serves it, `api-key new` makes a client's key.

Each command imports what it runs when it runs (the imports inside the functions): `zonesync --help`, a usage error
or another command loads none of it (uvicorn, FastAPI, the deployments).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from zonesync.flows.cli.support import api_server_options, console, friendly_errors
from zonesync.schemas.errors import ConfigError

api_keys = typer.Typer(help="Keys of the HTTP API's clients.", no_args_is_help=True)


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


@friendly_errors
def api_key_new(
    name: Annotated[str, typer.Argument(help="The client's name, e.g. payments-portal.")],
    mapping: Annotated[list[str], typer.Option("--mapping", "-m", help="A mapping it may write (repeatable).")],
    scope: Annotated[
        str, typer.Option(help="What it may do there: push, update, delete, or several: push,update.")
    ] = "push",
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
