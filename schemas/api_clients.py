"""Who may write through the HTTP entry point: API clients, each with a hashed key and scopes per mapping.

The clients are declared in a TOML file that ZONESYNC_API_CLIENTS_FILE names, one line per client (as
`zonesync api-key new` prints it):

    clients.portal = { key_sha256 = "9f86d0…", scopes = { merchants = ["push", "update"] } }

A key is `<client name>.<43 random characters>` (256 random bits), shown once when it is made and stored only
as its SHA-256: a key that random cannot be found from its hash by trying, so a slow password hash would buy
nothing and cost every request milliseconds. Keys are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.settings import Settings

Scope = Literal["push", "update", "delete"]
SCOPES: tuple[Scope, ...] = ("push", "update", "delete")  # delete: its own scope, never implied by the others
CLIENT_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
_KEY = re.compile(rf"({CLIENT_NAME})\.([A-Za-z0-9_-]{{43}})")
_NO_CLIENT_HASH = hashlib.sha256(b"no such client").hexdigest()  # compared against when the name is unknown


class ApiClient(BaseModel):
    """One client: its key's SHA-256 and what it may do to which mapping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=rf"^{CLIENT_NAME}$")]
    key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    scopes: dict[str, frozenset[Scope]]

    def may(self, mapping: str, scope: Scope) -> bool:
        """Whether this client may `scope` (push, update, delete) records of `mapping`."""
        return scope in self.scopes.get(mapping, frozenset())


@dataclass(frozen=True)
class ApiClients:
    """The declared clients, by name."""

    by_name: Mapping[str, ApiClient]

    def authenticate(self, key: str) -> ApiClient | None:
        """The client whose key this is, or None; the same work whether the name is known or not."""
        match = _KEY.fullmatch(key)
        name = match.group(1) if match else ""
        client = self.by_name.get(name)
        expected = client.key_sha256 if client else _NO_CLIENT_HASH
        valid = hmac.compare_digest(key_sha256(key), expected)
        return client if valid and client is not None and match is not None else None

    def mappings(self) -> set[str]:
        """Every mapping some client has a scope on."""
        return {mapping for client in self.by_name.values() for mapping in client.scopes}


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_clients(path: Path, setting: str = "ZONESYNC_API_CLIENTS_FILE") -> ApiClients:
    """The clients a file declares; a file that cannot be read or a bad entry is one ConfigError line."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{setting}: {path} is not valid TOML: {exc}") from None
    declared = document.get("clients", {})
    if not isinstance(declared, dict) or set(document) - {"clients"}:
        raise ConfigError(f"{setting}: {path} must hold only clients.<name> = {{ key_sha256 = ..., scopes = ... }}")
    clients = {}
    for name, entry in declared.items():
        try:
            clients[name] = ApiClient.model_validate({"name": name, **(entry if isinstance(entry, dict) else {})})
        except ValidationError as exc:
            problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{setting}: client {name[:64]!r} in {path}: {problem}") from None
    return ApiClients(clients)


def declared_clients(settings: Settings, mappings: Collection[str]) -> ApiClients | None:
    """The clients the settings declare; None (no authentication) only when ZONESYNC_API_INSECURE_NO_AUTH says
    so. Declared scopes must name registered `mappings`."""
    if settings.api_clients_file is None:
        if not settings.api_insecure_no_auth:
            raise ConfigError(
                "no API clients declared: set ZONESYNC_API_CLIENTS_FILE (`zonesync api-key new` prints a client's "
                "line), or pass --insecure-no-auth for local development"
            )
        return None
    return clients_in(settings.api_clients_file, mappings)


def clients_in(path: Path, mappings: Collection[str]) -> ApiClients:
    """The clients a file declares, at least one, with scopes only on registered `mappings` (else ConfigError)."""
    clients = read_clients(path)
    if not clients.by_name:
        raise ConfigError(f"ZONESYNC_API_CLIENTS_FILE: {path} declares no client")
    if unknown := clients.mappings() - set(mappings):
        raise ConfigError(
            f"ZONESYNC_API_CLIENTS_FILE: scopes on unknown mappings {', '.join(sorted(unknown))} "
            f"(registered: {', '.join(sorted(mappings))})"
        )
    return clients


def new_client(name: str, scopes: Mapping[str, frozenset[Scope]]) -> tuple[str, str]:
    """A new key for `name`, and the line that declares the client (its key's hash, never the key)."""
    if not re.fullmatch(CLIENT_NAME, name):
        raise ConfigError(f"client name {name[:64]!r}: use letters, digits, '-' and '_' (at most 63)")
    key = f"{name}.{secrets.token_urlsafe(32)}"
    granted = ", ".join(
        f"{_toml_key(mapping)} = {json.dumps([scope for scope in SCOPES if scope in wanted])}"
        for mapping, wanted in scopes.items()
    )
    return key, f'clients.{name} = {{ key_sha256 = "{key_sha256(key)}", scopes = {{ {granted} }} }}'


def _toml_key(name: str) -> str:
    """A TOML key: bare when it can be, else quoted (a JSON string is a TOML basic string)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
