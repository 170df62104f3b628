"""The `zonesync` console script as the tests run it: a real subprocess, its exit code and output, and a check
that no password is ever printed."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ZonePair, backend_param

SECRET = "Sup3rS3cret"
SCRIPT = Path(sys.executable).with_name("zonesync")
SQLITE_ONLY = pytest.mark.parametrize("backend", [backend_param("sqlite")])
# A command that moves data runs through the console script on SQLite (where a user starts) and on one server
# backend, in turn (a password in its URL, a real driver): the flows it runs are tested on all three elsewhere.
SQLITE_AND_POSTGRESQL = pytest.mark.parametrize("backend", [backend_param("sqlite"), backend_param("postgresql")])
SQLITE_AND_MARIADB = pytest.mark.parametrize("backend", [backend_param("sqlite"), backend_param("mariadb")])


@dataclass
class Run:
    """One finished `zonesync` command."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def row(self, first_cell: str) -> list[str]:
        """The cells of the printed table row whose first cell is `first_cell`."""
        for line in self.stdout.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            if len(cells) > 1 and cells[0] == first_cell:
                return cells
        raise AssertionError(f"no table row {first_cell!r} in the output of {self.args}:\n{self.stdout}")

    def __str__(self) -> str:
        return f"zonesync {' '.join(self.args)} -> exit {self.code}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


@dataclass
class Cli:
    """Runs the installed console script with a given environment; checks that no secret is ever printed."""

    home: Path
    settings: dict[str, str]
    secrets: tuple[str, ...] = ()
    api_url: str | None = None
    timeout: float = 180
    runs: list[Run] = field(default_factory=list)

    def __call__(self, *args: str, **overrides: str | None) -> Run:
        """Run `zonesync *args`; keyword arguments override (None: unset) ZONESYNC_* settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_"))}
        env |= {
            "PREFECT_HOME": str(self.home / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "COLUMNS": "250",  # wide enough that rich never truncates a table cell
        }
        if self.api_url:
            env["PREFECT_API_URL"] = self.api_url
        for name, value in (self.settings | overrides).items():
            if value is not None:
                env[name] = value
        command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zonesync.flows.cli"]
        done = subprocess.run(
            [*command, *args], cwd=self.home, env=env, capture_output=True, text=True, timeout=self.timeout
        )
        run = Run(args, done.returncode, done.stdout, done.stderr)
        self.runs.append(run)
        for secret in (SECRET, *self.secrets):
            assert secret not in run.stdout + run.stderr, f"a password leaked:\n{run}"
        return run


def zone_settings(pair: ZonePair, modules: str = "zonesync.schemas.examples") -> dict[str, str]:
    """The ZONESYNC_* environment of a zone pair."""
    return {
        "ZONESYNC_INTRANET_URL": pair.intranet_url,
        "ZONESYNC_INTERNET_URL": pair.internet_url,
        "ZONESYNC_MAPPING_MODULES": modules,
    }
