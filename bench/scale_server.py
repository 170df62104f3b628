"""The one Prefect server every worker of the scale-out benchmark talks to, started before anything is timed.

- `postgres` (the default): `prefect server start` as a subprocess, its database on the benchmark's PostgreSQL
  server (`<prefix>_prefect`, created and dropped here), as Prefect advises for production.
- `sqlite`: the same on a SQLite file in the temporary PREFECT_HOME.
- `harness`: `prefect_test_harness` in this process, as the other benchmarks use (a uvicorn subprocess on SQLite).

Measured with eight processes each running a one-task flow at once (2 cores): on SQLite, both `harness` and
`sqlite`, the server answers 503 while its file is locked and the clients retry after 2 and 4 s, so the eight flow
runs took 1.2 to 7-8 s each; on PostgreSQL 1.5 to 2.1 s, no retry.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

from bench.database import DatabasePair

STARTUP_TIMEOUT_SECONDS = 90


@contextmanager
def prefect_api(kind: str, home: Path, pair: DatabasePair, prefix: str) -> Iterator[str]:
    """Run the server for the block; yields its API URL (for the workers' PREFECT_API_URL)."""
    if kind == "harness":
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=STARTUP_TIMEOUT_SECONDS):
            yield str(PREFECT_API_URL.value())
        return
    if kind == "sqlite":
        with _server_process(home, {}) as url:
            yield url
        return
    name = f"{prefix}_prefect"
    _recreate(pair, name)
    try:
        database = pair.server.set(drivername="postgresql+asyncpg", database=name)
        setting = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": database.render_as_string(hide_password=False)}
        with _server_process(home, setting) as url:
            yield url
    finally:
        _drop(pair, name)


def _recreate(pair: DatabasePair, name: str) -> None:
    _drop(pair, name)
    with pair.connect(pair.server.database or "postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop(pair: DatabasePair, name: str) -> None:
    with pair.connect(pair.server.database or "postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server_process(home: Path, settings: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    env = os.environ | settings | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                                   "PREFECT_SERVER_UI_ENABLED": "false"}  # fmt: skip
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
               "--no-ui", "--log-level", "WARNING"]  # fmt: skip
    with (home / "prefect-server.log").open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server start exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server at {url} did not answer within {STARTUP_TIMEOUT_SECONDS}s")
