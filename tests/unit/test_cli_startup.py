"""A command costs what it uses: `zonesync --help`, a usage error and the command table load no database, dataframe
or Prefect code (each command imports what it runs when it runs)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout

import pytest
import typer
from typer.testing import CliRunner

from zonesync.flows.cli import app, main
from zonesync.flows.cli.app import EPHEMERAL_SERVER_STARTUP_SECONDS

HEAVY = ("sqlalchemy", "polars", "prefect", "pandera", "pydantic_settings", "psycopg", "pymysql", "connectorx",
         "uvicorn", "fastapi")  # fmt: skip
STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PROBE = textwrap.dedent(
    """
    import sys
    from zonesync.flows.cli import main
    sys.argv = ["zonesync", *sys.argv[1:]]
    try:
        main()
    except SystemExit as exit:
        code = exit.code
    heavy = sorted({name.split(".")[0] for name in sys.modules} & set({heavy!r}))
    print(code, heavy, file=sys.stderr)
    """
).replace("{heavy!r}", repr(HEAVY))


def _loaded_by(*argv: str) -> str:
    """The exit code and the heavy packages loaded by `zonesync ARGV` (printed last on stderr)."""
    run = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60, check=False)
    return run.stderr.strip().splitlines()[-1]


def test_help_and_usage_errors_load_no_database_dataframe_or_prefect_code() -> None:
    assert _loaded_by("--help") == "0 []"
    assert _loaded_by("push") == "2 []"  # the mapping argument is missing
    assert _loaded_by("retry", "--batch-size", "0") == "2 []"
    assert _loaded_by("no-such-command") == "2 []"


def test_every_command_is_listed_in_the_help() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 1}
    assert set(group.commands) <= listed
    assert {"init", "demo", "retry", "push", "update", "end-day", "status", "mappings", "schema", "api-key"} <= listed


def test_the_temporary_prefect_server_gets_two_minutes_to_start_unless_the_user_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for given, kept in ((None, str(EPHEMERAL_SERVER_STARTUP_SECONDS)), ("45", "45")):
        if given is None:
            monkeypatch.delenv(STARTUP_TIMEOUT, raising=False)
        else:
            monkeypatch.setenv(STARTUP_TIMEOUT, given)
        monkeypatch.setattr(sys, "argv", ["zonesync", "--help"])
        with pytest.raises(SystemExit), redirect_stdout(io.StringIO()):
            main()
        assert os.environ[STARTUP_TIMEOUT] == kept
