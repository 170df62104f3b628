"""Shared fixtures: the backend matrix, throw-away databases, zone pairs and a session-wide Prefect harness.

SQLite always runs (fresh files per test). PostgreSQL and MariaDB run when ZONESYNC_TEST_POSTGRES_URL /
ZONESYNC_TEST_MARIADB_URL name a server; each session creates its own databases there (one per zone) and a
login with a random password, and drops them at the end. Without a URL those tests are skipped, unless
ZONESYNC_REQUIRE_ALL_BACKENDS=1 (CI): then a missing or unreachable server fails them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from tests import processes

BACKENDS = ("sqlite", "postgresql", "mariadb")
SERVER_ENV = {"postgresql": "ZONESYNC_TEST_POSTGRES_URL", "mariadb": "ZONESYNC_TEST_MARIADB_URL"}
REQUIRE_ALL_ENV = "ZONESYNC_REQUIRE_ALL_BACKENDS"
ZONE_NAMES = ("intranet", "internet")
TEST_MAPPING_MODULES = "zonesync.schemas.examples,tests.integration.mappings"
# Same-backend pairs for every backend, then cross-engine pairs in both directions around the triangle.
CROSS_PAIRS = (
    ("mariadb", "postgresql"),
    ("postgresql", "sqlite"),
    ("sqlite", "mariadb"),
    ("postgresql", "mariadb"),
    ("sqlite", "postgresql"),
    ("mariadb", "sqlite"),
)

_prefect_home: str | None = None
_swept = processes.Swept()  # what the session start swept away of earlier runs
FAILED = pytest.StashKey[bool]()  # set on a test's item when one of its phases failed

# The slow lane (`make test-slow`; `make test-fast` is everything else, the everyday loop): what needs whole Prefect
# servers or workers, private clusters, real waits for limits to run out, or long generated runs. `make test`
# runs both lanes, as CI does. A module, or one test function of a module ("path::function").
SLOW_LANE = {
    "tests/torture": "crash, stall and outage drills: real processes, private clusters",
    "tests/integration/test_bounded_waits.py": "waits for connect, statement and lock limits to run out",
    "tests/integration/test_database_tls.py": "private TLS-only PostgreSQL and MariaDB clusters",
    "tests/integration/test_local_infile.py": "a private MariaDB started with local_infile = 0",
    "tests/integration/test_automations.py": "a `prefect server start` of its own: triggers, events, automations",
    "tests/integration/test_deployments.py": "deployments registered and run by a real process worker",
    "tests/integration/test_first_hour.py": "the demo and the README's commands with a fresh Prefect home",
    "tests/integration/test_own_databases.py": "docs/own-databases.md followed block by block: its DDL, then init, "
    "the flows, reconcile and status through the console script on PostgreSQL and MariaDB",
    "tests/integration/test_nothing_sensitive.py": "every flow, persisted results and the API, then Prefect's "
    "database, logs and answers scanned for a sentinel value",
    "tests/integration/test_packaging.py": "a wheel built and installed in a fresh virtualenv",
    "tests/integration/test_http_fuzz.py": "generated HTTP requests (schemathesis)",
    "tests/integration/test_properties.py": "generated rows on every pairing (hypothesis)",
    "tests/unit/test_validate_compiled.py::test_generated_batches_get_the_same_result_as_from_pandera": "generated "
    "batches checked by both validators",
    "tests/integration/test_fan_out.py::test_a_run_fans_a_partitioned_mapping_out_to_a_local_dask_cluster": (
        "a local Dask cluster of processes, started for the run"
    ),
    "tests/integration/test_least_privilege.py::"
    "test_the_command_line_flows_and_recover_after_a_crash_run_as_the_role": (
        "the command line's flows as a restricted role, each with a temporary Prefect server of its own"
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow lane's tests `slow` (deselected with `-m "not slow"`)."""
    for item in items:
        path, _, rest = item.nodeid.partition("::")
        function = rest.partition("[")[0]
        if any(path == lane or path.startswith(f"{lane}/") or f"{path}::{function}" == lane for lane in SLOW_LANE):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config: pytest.Config) -> None:
    """Sweep away what earlier runs left (tests/processes.py: processes and folders of sessions that are gone),
    then point Prefect at a throw-away home of this session's and keep it offline before anything imports it.

    The home is removed when this process exits (after Prefect's own exit handlers: the harness's database is in
    it); if the process is killed, by its reaper, or failing that by the next session's sweep."""
    global _prefect_home, _swept
    _swept = processes.sweep()
    _prefect_home = processes.owned_temp_dir("zonesync-prefect-home-")
    atexit.register(shutil.rmtree, _prefect_home, ignore_errors=True)
    os.environ["PREFECT_HOME"] = _prefect_home
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say so when earlier runs had left processes or folders behind."""
    if not (_swept.killed or _swept.removed):
        return None
    killed, removed = len(_swept.killed), len(_swept.removed)
    return f"swept what earlier runs left: {killed} process(es) killed, {removed} folder(s) removed"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Remember on the item that a phase failed (`failed`: fixtures keep a server's log then)."""
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the requesting test failed so far (for a fixture's teardown)."""
    return request.node.stash.get(FAILED, False)


def backend_param(name: str) -> Any:
    """A pytest param for one backend, marked with it."""
    return pytest.param(name, marks=pytest.mark.backend(name), id=name)


def pair_param(intranet: str, internet: str) -> Any:
    """A pytest param for an intranet -> internet backend pairing, marked with both backends."""
    marks = [pytest.mark.backend(intranet)] + ([pytest.mark.backend(internet)] if internet != intranet else [])
    return pytest.param((intranet, internet), marks=marks, id=f"{intranet}-to-{internet}")


def unavailable(reason: str) -> None:
    """Skip, or fail when every backend is required (CI)."""
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL_ENV}=1, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@dataclass
class ServerDatabases:
    """The throw-away databases and login this session created on one server."""

    backend: str
    admin_url: URL
    user: str
    password: str = field(repr=False)
    databases: dict[str, str]

    def zone_url(self, zone: str) -> str:
        """The raw URL (with the password) of a zone's database, as a user would configure it."""
        url = self.admin_url.set(username=self.user, password=self.password, database=self.databases[zone])
        return url.render_as_string(hide_password=False)


class ThrowawayServers:
    """Creates per-session databases on the configured servers on first use, drops them at session end."""

    def __init__(self) -> None:
        self._servers: dict[str, ServerDatabases] = {}
        self._failures: dict[str, str] = {}
        self.token = secrets.token_hex(4)

    def get(self, backend: str) -> ServerDatabases:
        """The databases of a server backend (skips or fails when the server is not available)."""
        if backend in self._failures:
            unavailable(self._failures[backend])
        if backend not in self._servers:
            try:
                self._servers[backend] = self._create(backend)
            except _Unavailable as exc:
                self._failures[backend] = str(exc)
                unavailable(str(exc))
        return self._servers[backend]

    def _create(self, backend: str) -> ServerDatabases:
        from zonesync.schemas.errors import short_message
        from zonesync.tasks.zones.engines import parse_url

        env = SERVER_ENV[backend]
        raw = os.environ.get(env)
        if not raw:
            raise _Unavailable(f"{backend} tests need {env} (a server URL to create throw-away databases)")
        admin_url = parse_url(raw, setting=env)
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10})
        user, password = f"zs_test_{self.token}", secrets.token_urlsafe(12)
        databases = {zone: f"zs_test_{self.token}_{zone}" for zone in ZONE_NAMES}
        try:
            with admin.connect() as conn:
                if backend == "postgresql":
                    conn.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
                    for name in databases.values():
                        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {user}")
                else:
                    conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
                    for name in databases.values():
                        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                        conn.exec_driver_sql(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%%'")
        except sa.exc.OperationalError as exc:
            raise _Unavailable(f"{backend} server of {env} is not reachable: {short_message(exc)}") from exc
        finally:
            admin.dispose()
        return ServerDatabases(backend, admin_url, user, password, databases)

    def drop_all(self) -> None:
        """Drop every database and login this session created."""
        for server in self._servers.values():
            admin = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for name in server.databases.values():
                    if server.backend == "postgresql":
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    else:
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
                if server.backend == "postgresql":
                    conn.exec_driver_sql(f"DROP ROLE IF EXISTS {server.user}")
                else:
                    conn.exec_driver_sql(f"DROP USER IF EXISTS '{server.user}'@'%%'")
            admin.dispose()
        self._servers.clear()


class _Unavailable(Exception):
    pass


@pytest.fixture(scope="session")
def servers() -> Iterator[ThrowawayServers]:
    """Throw-away databases on the PostgreSQL and MariaDB servers, created lazily, dropped at the end."""
    created = ThrowawayServers()
    yield created
    from zonesync.tasks.zones.engines import dispose_engines

    dispose_engines()
    created.drop_all()


@dataclass
class ZonePair:
    """Two zone databases (possibly on different backends), empty at the start of a test."""

    intranet_backend: str
    internet_backend: str
    intranet_url: str = field(repr=False)  # raw URLs hold the password: keep them out of failure reports
    internet_url: str = field(repr=False)
    passwords: tuple[str, ...] = field(repr=False)
    intranet: Engine = field(init=False)
    internet: Engine = field(init=False)

    def __post_init__(self) -> None:
        from zonesync.tasks.zones.engines import create_engine, parse_url

        self.intranet = create_engine(parse_url(self.intranet_url, setting="ZONESYNC_INTRANET_URL"))
        self.internet = create_engine(parse_url(self.internet_url, setting="ZONESYNC_INTERNET_URL"))

    def dispose(self) -> None:
        """Close pooled connections."""
        self.intranet.dispose()
        self.internet.dispose()


def _wipe(engine: Engine, keep: sa.MetaData | None = None) -> None:
    """Start a test from an empty database: every table dropped (with its triggers), but the tables of `keep` that
    are still as this session created them, which are truncated instead (as new: ids from 1; about half the cost
    of dropping and creating them)."""
    names = set(sa.inspect(engine).get_table_names())
    kept = _pristine(engine, keep, names) if keep is not None else []
    dropped = names - {table.name for table in kept}
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as conn:
        if dropped and engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(preparer.quote(n) for n in dropped)} CASCADE")
        elif dropped and engine.dialect.name in ("mysql", "mariadb"):
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(preparer.quote(n) for n in dropped)}")
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        else:
            for name in dropped:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {preparer.quote(name)}")
        if kept and engine.dialect.name == "postgresql":  # ids from 1 again, rows in insertion order again
            conn.exec_driver_sql(f"TRUNCATE {', '.join(preparer.format_table(t) for t in kept)} RESTART IDENTITY")
        for table in kept if engine.dialect.name != "postgresql" else ():
            conn.exec_driver_sql(f"TRUNCATE TABLE {preparer.format_table(table)}")


# Each kept table's catalog signature (`Dialect.catalog_signature`: columns, types, defaults, key) as this
# session created it, per database: a table a test altered, or any table of a database holding a trigger, is
# dropped and created again rather than emptied.
_as_created: dict[tuple[str, str], tuple[object, ...]] = {}


def _pristine(engine: Engine, keep: sa.MetaData, names: set[str]) -> list[sa.Table]:
    """The tables of `keep` present in `engine`'s database exactly as created (none on SQLite: a file per test)."""
    from zonesync.tasks.zones.engines import dialect_for

    if engine.dialect.name == "sqlite" or _has_triggers(engine):
        return []
    dialect, where = dialect_for(engine), engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        return [
            table
            for table in keep.sorted_tables
            if table.name in names and _as_created.get((where, table.name)) == dialect.catalog_signature(conn, table)
        ]


def _has_triggers(engine: Engine) -> bool:
    query = {
        "postgresql": "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND n.nspname = current_schema()",
    }.get(engine.dialect.name, "SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()")
    with engine.connect() as conn:
        return bool(conn.exec_driver_sql(query).scalar())


def _remember_as_created(engine: Engine, keep: sa.MetaData) -> None:
    from zonesync.tasks.zones.engines import dialect_for

    if engine.dialect.name == "sqlite":
        return
    dialect, where = dialect_for(engine), engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn:
        for table in keep.sorted_tables:
            _as_created.setdefault((where, table.name), dialect.catalog_signature(conn, table))


def _zone_url(servers: ThrowawayServers, backend: str, zone: str, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{zone}.db'}", ()
    server = servers.get(backend)
    return server.zone_url(zone), (server.password,)


def make_pair(servers: ThrowawayServers, intranet: str, internet: str, tmp_path: Path) -> ZonePair:
    """Empty intranet and internet databases on the given backends, with the bookkeeping tables."""
    from zonesync.tasks.bookkeeping.tables import create_bookkeeping, metadata

    intranet_url, intranet_secret = _zone_url(servers, intranet, "intranet", tmp_path)
    internet_url, internet_secret = _zone_url(servers, internet, "internet", tmp_path)
    pair = ZonePair(intranet, internet, intranet_url, internet_url, tuple(set(intranet_secret + internet_secret)))
    _wipe(pair.intranet, keep=metadata)
    _wipe(pair.internet)
    create_bookkeeping(pair.intranet)
    _remember_as_created(pair.intranet, metadata)
    return pair


@pytest.fixture(params=[backend_param(name) for name in BACKENDS])
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    return str(request.param)


@pytest.fixture
def zones(servers: ThrowawayServers, backend: str, tmp_path: Path) -> Iterator[ZonePair]:
    """Both zones on the same backend, empty (bookkeeping tables created)."""
    pair = make_pair(servers, backend, backend, tmp_path)
    yield pair
    pair.dispose()


@pytest.fixture(params=[pair_param(name, name) for name in BACKENDS] + [pair_param(a, b) for a, b in CROSS_PAIRS])
def any_zones(servers: ThrowawayServers, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ZonePair]:
    """Every backend as intranet and as internet: same-backend pairs and cross-engine pairs."""
    intranet, internet = request.param
    pair = make_pair(servers, intranet, internet, tmp_path)
    yield pair
    pair.dispose()


@pytest.fixture
def use_zones(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Point zonesync's settings (ZONESYNC_* env vars) at a zone pair; caches are cleared before and after."""
    from zonesync.schemas import registry, settings
    from zonesync.tasks.zones import engines

    def reset() -> None:
        settings.get_settings.cache_clear()
        registry._registry.cache_clear()
        engines.dispose_engines()

    def use(pair: ZonePair, *, modules: str = TEST_MAPPING_MODULES, batch_size: int | None = None) -> None:
        monkeypatch.setenv("ZONESYNC_INTRANET_URL", pair.intranet_url)
        monkeypatch.setenv("ZONESYNC_INTERNET_URL", pair.internet_url)
        monkeypatch.setenv("ZONESYNC_MAPPING_MODULES", modules)
        if batch_size is None:
            monkeypatch.delenv("ZONESYNC_BATCH_SIZE", raising=False)
        else:
            monkeypatch.setenv("ZONESYNC_BATCH_SIZE", str(batch_size))
        reset()

    yield use
    reset()


@pytest.fixture
def demo(zones: ZonePair, use_zones: Callable[..., None]) -> ZonePair:
    """The demo tables in both zones (each backend), settings pointed at them."""
    from zonesync.schemas.examples.tables import internet_tables, intranet_tables

    intranet_tables().create_all(zones.intranet)
    internet_tables().create_all(zones.internet)
    use_zones(zones, modules="zonesync.schemas.examples")
    return zones


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (only flow tests request it: it takes ~10 s)."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    updates = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_SERVER_ANALYTICS_ENABLED: False}
    with contextlib.ExitStack() as stack:
        stack.enter_context(temporary_settings(updates=updates))
        # The harness's database folder (its mkdtemp()) goes into this session's home, which goes with the session
        # however it ends; its server (Prefect's subprocess) carries the session's owner tag for the reaper.
        previous, tempfile.tempdir = tempfile.tempdir, _prefect_home
        try:
            stack.enter_context(prefect_test_harness(server_startup_timeout=60))
        finally:
            tempfile.tempdir = previous
        yield
