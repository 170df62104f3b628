"""The `zonesync` console script as the tests run it: a real subprocess (`Cli`), or the same entry point in this
process (`InProcessCli`, for user mistakes: no interpreter start-up per case); its exit code and output, and a
check that no password is ever printed."""

from __future__ import annotations

import io
import logging
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ZonePair, backend_param
from tests.processes import run_owned

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
        done = run_owned(
            [*command, *args], cwd=self.home, env=env, capture_output=True, text=True, timeout=self.timeout
        )
        return self._finished(Run(args, done.returncode, done.stdout, done.stderr))

    def _finished(self, run: Run) -> Run:
        self.runs.append(run)
        for secret in (SECRET, *self.secrets):
            assert secret not in run.stdout + run.stderr, f"a password leaked:\n{run}"
        return run


@dataclass
class InProcessCli(Cli):
    """The console script's entry point (`main`) run in this process, in the environment `Cli` would give it: the
    ZONESYNC_* settings replaced, the working directory `home`, the settings, registry and engine caches cleared
    before and after. For user mistakes, which must be refused before any work starts; the real script is proven
    by the `Cli` runs that stay (its start-up, its environment, its stdout and stderr as a terminal shows them)."""

    monkeypatch: pytest.MonkeyPatch | None = None

    def __call__(self, *args: str, **overrides: str | None) -> Run:
        from zonesync.flows.cli import main, support

        assert self.monkeypatch is not None, "InProcessCli needs the test's monkeypatch"
        stdout, stderr = io.StringIO(), io.StringIO()
        with self.monkeypatch.context() as patch:
            for name in [name for name in os.environ if name.startswith("ZONESYNC_")]:
                patch.delenv(name)
            for name, value in (self.settings | overrides).items():
                if value is not None:
                    patch.setenv(name, value)
            patch.chdir(self.home)
            patch.setattr(sys, "argv", ["zonesync", *args])
            patch.setattr(support.console, "width", 250)  # as COLUMNS=250 makes it in the script's process
            _forget_settings()
            logs = _LogsTo(stderr)  # the script's process prints its log lines on stderr
            try:
                with redirect_stdout(stdout), redirect_stderr(stderr), logs:
                    main()
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            finally:
                _forget_settings()
        return self._finished(Run(args, code, stdout.getvalue(), stderr.getvalue()))


class _LogsTo:
    """Zonesync's and Prefect's log records also written to `stream` while the block runs (their own handlers write
    to the terminal's stderr, bound when they were made)."""

    def __init__(self, stream: io.StringIO) -> None:
        self.handler = logging.StreamHandler(stream)
        self.handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(name)s - %(message)s"))
        self.loggers = [logging.getLogger(), logging.getLogger("prefect")]

    def __enter__(self) -> None:
        for logger in self.loggers:
            logger.addHandler(self.handler)

    def __exit__(self, *_: object) -> None:
        for logger in self.loggers:
            logger.removeHandler(self.handler)


def _forget_settings() -> None:
    """What a fresh process would not have: cached settings, registered mappings, open engines."""
    from zonesync.schemas import registry, settings
    from zonesync.tasks.zones import engines

    settings.get_settings.cache_clear()
    registry._registry.cache_clear()
    engines.dispose_engines()


def zone_settings(pair: ZonePair, modules: str = "zonesync.schemas.examples") -> dict[str, str]:
    """The ZONESYNC_* environment of a zone pair."""
    return {
        "ZONESYNC_INTRANET_URL": pair.intranet_url,
        "ZONESYNC_INTERNET_URL": pair.internet_url,
        "ZONESYNC_MAPPING_MODULES": modules,
    }
