"""The zones' connection budget: Prefect global concurrency limits that every carrier takes its share of first."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

from tests.conftest import ZonePair, backend_param
from tests.integration.console import Cli, zone_settings
from tests.integration.helpers import jobs, seed, unflagged_keys
from tests.integration.partitioned_mappings import MERCHANTS as PARTITIONED
from zonesync.flows.cli.support import EXIT_USAGE
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas.settings import ZONES, get_settings
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones.budget import budget_limit, forget_limits, read_budgets, set_budget
from zonesync.tasks.zones.engines import CONNECTIONS_PER_SLICE

NAMES = [budget_limit(zone) for zone in ZONES]


@pytest.fixture
def budgets(prefect_harness: None) -> Iterator[None]:
    """The budgets a test sets, deleted afterwards (the session's server is shared by every flow test)."""
    yield
    with get_client(sync_client=True) as client:
        for name in NAMES:
            client.delete_global_concurrency_limit_by_name(name)
    forget_limits()


@pytest.mark.usefixtures("budgets")
@pytest.mark.parametrize("backend", [backend_param("postgresql")], indirect=True)
def test_a_carrier_waits_for_its_share_of_the_budget_and_fails_when_it_stays_taken(
    demo: ZonePair, use_zones: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_zones(demo, modules="tests.integration.partitioned_mappings")
    seed(demo.intranet, "merchant", demo_data.merchants(12), ("merchant_id",))
    for zone in ZONES:
        set_budget(zone, CONNECTIONS_PER_SLICE)  # room for one carrier at a time
    monkeypatch.setenv("ZONESYNC_BUDGET_WAIT_SECONDS", "2")

    with concurrency(NAMES, occupy=CONNECTIONS_PER_SLICE, strict=True):  # another worker's carrier holds it all
        starved = retry_sync(mappings=["merchants"], workers=2)["merchants"]
    assert starved.status == "error" and "waited 2 s for 4 connections of the zones' budget" in starved.message
    assert len(unflagged_keys(demo.intranet, PARTITIONED)) == 12 and jobs(demo.intranet)[-1]["status"] == "FAILED"

    # Free again: the two slices take turns within a budget of one carrier (the default wait), and carry everything.
    monkeypatch.delenv("ZONESYNC_BUDGET_WAIT_SECONDS")
    get_settings.cache_clear()
    carried = retry_sync(mappings=["merchants"], workers=2)["merchants"]
    assert carried.status == "success" and carried.flagged == 12
    assert unflagged_keys(demo.intranet, PARTITIONED) == set()
    assert all(found.taken == 0 for found in read_budgets())  # every share given back


@pytest.mark.usefixtures("budgets")
@pytest.mark.parametrize("backend", [backend_param("sqlite")], indirect=True)
def test_zonesync_budget_sets_and_shows_each_zones_limit(zones: ZonePair, tmp_path: Path, prefect_api: str) -> None:
    cli = Cli(tmp_path, zone_settings(zones), zones.passwords, api_url=prefect_api)

    unset = cli("budget")
    assert unset.code == 0 and unset.stdout.count("none: not limited") == 2

    shown = cli("budget", "--intranet", "40", "--internet", "24")
    assert shown.code == 0
    assert [(found.zone, found.limit) for found in read_budgets()] == [("intranet", 40), ("internet", 24)]
    assert "zonesync-connections-intranet" in shown.stdout and "24" in shown.stdout

    too_small = cli("budget", "--internet", "3")
    assert too_small.code == EXIT_USAGE and "less than one carrier holds (4)" in too_small.stderr
    assert len(too_small.stderr.strip().splitlines()) == 1
