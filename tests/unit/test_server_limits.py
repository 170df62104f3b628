"""The access log line `zonesync api` writes is bounded whatever the path (`deployments/server.py`), and the
failed-authentication limit counts per address and forgets ended windows (`deployments/auth_limit.py`)."""

from __future__ import annotations

import logging

import pytest

from zonesync.deployments import auth_limit
from zonesync.deployments.auth_limit import FailedAuthLimit
from zonesync.deployments.server import LOGGED_PATH, BoundedAccessLine


def test_an_access_log_line_is_bounded_whatever_the_path() -> None:
    """uvicorn's access line, made as uvicorn makes it, through the filter `zonesync api` installs."""
    arguments = ("127.0.0.1:5000", "POST", "/x\n12:00 forged" + "a" * 60_000, "1.1", 401)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', arguments, None)

    assert BoundedAccessLine().filter(record)

    line = record.getMessage()
    assert len(line) < LOGGED_PATH + 100 and "\n" not in line and "(+59815 characters)" in line


def test_the_failed_authentication_limit_is_per_address_and_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth_limit.time, "monotonic", lambda: now[0])
    limit = FailedAuthLimit(3)

    for _ in range(3):
        assert limit.retry_after("10.0.0.1") is None
        limit.failed("10.0.0.1")

    assert limit.retry_after("10.0.0.1") == 60 and limit.retry_after("10.0.0.2") is None
    now[0] += 59.5
    assert limit.retry_after("10.0.0.1") == 1
    now[0] += 1
    assert limit.retry_after("10.0.0.1") is None and "10.0.0.1" not in limit.windows


def test_the_api_command_names_the_limited_protocol_and_the_log_filter() -> None:
    """`zonesync api` names them by import path (the command line stands below the deployments layer)."""
    from uvicorn.importer import import_from_string

    from zonesync.deployments.server import TimedHttpTools
    from zonesync.flows.cli.support import api_server_options

    options = api_server_options()

    assert import_from_string(options["http"]) is TimedHttpTools
    module, _, name = options["log_config"]["filters"]["bounded_access_line"]["()"].rpartition(".")
    assert import_from_string(f"{module}:{name}") is BoundedAccessLine
    assert options["log_config"]["handlers"]["access"]["filters"] == ["bounded_access_line"]
