"""A MariaDB whose server refuses LOAD DATA LOCAL INFILE (`local_infile = 0`, a hardening some sites apply): `zonesync
init` says so and what it costs, and batches too big for bound statements still land, loaded with multi-row
INSERTs. On a private server of this module's own: the shared one is never reconfigured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ZonePair
from tests.integration.helpers import assert_nothing_lost, mapped, seed, source_rows, sync, target_rows
from tests.torture.clusters import PrivateMariaDB
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.bookkeeping.tables import create_bookkeeping
from zonesync.tasks.setup import demo_data
from zonesync.tasks.setup.inspection import check_mapping
from zonesync.tasks.zones.engines import dialect_for

pytestmark = pytest.mark.backend("mariadb")


@pytest.fixture(scope="module")
def no_local_infile() -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB("--local-infile=0")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def zones(no_local_infile: PrivateMariaDB, tmp_path: Path, use_zones: Callable[..., None]) -> Iterator[ZonePair]:
    """The intranet zone on SQLite, the internet zone on the MariaDB without local_infile; the demo tables."""
    pair = ZonePair("sqlite", "mariadb", f"sqlite:///{tmp_path / 'intranet.db'}",
                    no_local_infile.fresh_database("zs_infile"), ())  # fmt: skip
    create_bookkeeping(pair.intranet)
    intranet_tables().create_all(pair.intranet)
    internet_tables().create_all(pair.internet)
    use_zones(pair, modules="zonesync.schemas.examples")
    yield pair
    pair.dispose()


def test_init_says_the_server_loads_no_local_files_and_what_it_costs(zones: ZonePair) -> None:
    check = check_mapping(MERCHANTS, zones.intranet, zones.internet)

    assert check.ok
    (said,) = [warning for warning in check.warnings if "local_infile" in warning]
    assert said.startswith("internet zone: the server has local_infile = 0") and "SET GLOBAL local_infile" in said


def test_a_batch_too_big_for_bound_statements_still_lands_without_load_data(zones: ZonePair) -> None:
    merchants = demo_data.merchants(400)
    seed(zones.intranet, "merchant", merchants, ["merchant_id"])

    report = sync(MERCHANTS, zones.intranet, zones.internet, zones.intranet, batch_size=400)

    assert (report.flagged, report.quarantined) == (397, 3)  # the demo's three invalid merchants
    assert dialect_for(zones.internet).load_data_refused  # tried once, then INSERTs
    keys = [(key,) for key in merchants["merchant_id"]]
    assert_nothing_lost(MERCHANTS, zones.intranet, zones.internet, zones.intranet, keys)
    synced = {key: row for key, row in source_rows(zones.intranet, MERCHANTS).items() if row["__flag"]}
    assert target_rows(zones.internet, MERCHANTS) == {key: mapped(row) for key, row in synced.items()}
