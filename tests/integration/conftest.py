"""Fixtures shared by integration tests: a synced merchant (the update tests), the console script (CLI tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ZonePair, failed
from tests.integration.console import Cli, InProcessCli, zone_settings
from tests.integration.data import SYNCED_MERCHANT
from tests.integration.helpers import create
from tests.torture.procs import PrefectServer
from zonesync.schemas import settings
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.push.pusher import push_records


@pytest.fixture
def synced(demo: ZonePair, monkeypatch: pytest.MonkeyPatch) -> ZonePair:
    """One merchant (SYNCED_MERCHANT), in both zones and flagged; updates through the intent record."""
    monkeypatch.setenv("ZONESYNC_TWO_PHASE", "false")
    settings.get_settings.cache_clear()
    assert push_records("merchants", [SYNCED_MERCHANT]).status == "success"
    return demo


@pytest.fixture(scope="session")
def prefect_api(prefect_harness: None) -> str:
    """The API URL of the session's test Prefect server (saves each flow command a 10 s temporary server)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness did not set PREFECT_API_URL"
    return str(url)


@pytest.fixture
def cli(zones: ZonePair, tmp_path: Path) -> Cli:
    """The console script pointed at the zone pair (no Prefect API: for commands that run no flow)."""
    return Cli(tmp_path, zone_settings(zones), zones.passwords)


@pytest.fixture
def flow_cli(zones: ZonePair, tmp_path: Path, prefect_api: str) -> Cli:
    """The console script pointed at the zone pair and at the session's Prefect server."""
    return Cli(tmp_path, zone_settings(zones), zones.passwords, api_url=prefect_api)


@pytest.fixture
def cli_in_process(zones: ZonePair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InProcessCli:
    """`cli`'s commands run in this process: for user mistakes (no interpreter start-up per case)."""
    return InProcessCli(tmp_path, zone_settings(zones), zones.passwords, monkeypatch=monkeypatch)


@pytest.fixture
def flow_cli_in_process(
    zones: ZonePair, tmp_path: Path, prefect_api: str, monkeypatch: pytest.MonkeyPatch
) -> InProcessCli:
    """`flow_cli`'s commands run in this process, their flows on the session's Prefect server."""
    return InProcessCli(tmp_path, zone_settings(zones), zones.passwords, api_url=prefect_api, monkeypatch=monkeypatch)


@pytest.fixture
def demo_zones(zones: ZonePair) -> ZonePair:
    """The demo tables in both zones, empty."""
    create(zones.intranet, intranet_tables())
    create(zones.internet, internet_tables())
    return zones


@pytest.fixture
def prefect_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrefectServer]:
    """A `prefect server start` of the test's own (its triggers and event services running; its database
    holding this test's runs only), stopped at the end and its home removed (its log kept in the test's
    tmp_path, as prefect-server.log, when the test failed)."""
    server = PrefectServer()
    try:
        server.wait_ready()
    except BaseException:
        server.close(keep_log_in=tmp_path)
        raise
    yield server
    server.close(keep_log_in=tmp_path if failed(request) else None)


@pytest.fixture
def demo_pair(any_zones: ZonePair, use_zones: Callable[..., None]) -> ZonePair:
    """The demo tables in both zones of every pairing (the nine), settings pointed at them."""
    create(any_zones.intranet, intranet_tables())
    create(any_zones.internet, internet_tables())
    use_zones(any_zones, modules="zonesync.schemas.examples")
    return any_zones
