"""The first hour of a new user, as the README leads it: what tripped one up must not trip the next."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import sqlalchemy as sa

from tests.integration.console import Cli
from zonesync.tasks.bookkeeping.tables import metadata as bookkeeping
from zonesync.tasks.setup.demo_data import CLOSED_MERCHANT

README = Path(__file__).resolve().parents[2] / "README.md"


def test_after_the_demo_the_readme_push_example_works_and_the_demo_points_at_the_configured_server(
    tmp_path: Path, prefect_api: str
) -> None:
    cli = Cli(tmp_path, {}, api_url=prefect_api)  # the default SQLite files, the session's Prefect server

    demo = cli("demo")
    assert demo.code == 0, str(demo)[-3000:]
    shown = " ".join(demo.stdout.split())
    assert f"Prefect UI: {prefect_api.removesuffix('/api')}/runs" in shown and "4200" not in shown
    # the story alone: the flow runs' log lines stay in Prefect; every bookkeeping table made is named
    timestamped = [line for line in (demo.stdout + demo.stderr).splitlines() if re.match(r"\d\d:\d\d:\d\d", line)]
    assert not timestamped, timestamped
    assert ", ".join(sorted(bookkeeping.tables)) in shown
    assert "rolled back" in shown and "(duplicate_key)" in shown and shown.count("duplicate_key") == 1
    # the closed merchant is carried by the next retry: archived in the internet zone, off its live table
    assert "1 applied, 0 skipped, 0 refused" in shown
    internet = sa.create_engine(f"sqlite:///{tmp_path / '.zonesync' / 'internet.db'}")
    with internet.connect() as conn:
        archived = conn.execute(sa.text("SELECT merchant_id FROM merchant_archive")).scalars().all()
        live = conn.execute(sa.text("SELECT count(*) FROM merchant WHERE merchant_id = :id"), {"id": CLOSED_MERCHANT})
        assert archived == [CLOSED_MERCHANT] and live.scalar_one() == 0
    internet.dispose()

    example = next(line for line in README.read_text().splitlines() if line.startswith("zonesync push merchants"))
    pushed = cli(*shlex.split(example)[1:])
    assert pushed.code == 0, str(pushed)  # its key is not one the demo already used
    assert "success" in pushed.stdout


def test_init_with_a_mapping_module_it_cannot_import_says_how_in_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    intranet = tmp_path / "intranet.db"
    cli = Cli(tmp_path, {"ZONESYNC_INTRANET_URL": f"sqlite:///{intranet}",
                         "ZONESYNC_INTERNET_URL": f"sqlite:///{tmp_path / 'internet.db'}",
                         "ZONESYNC_MAPPING_MODULES": "mycompany.zonesync_mappings"})  # fmt: skip

    run = cli("init")

    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1, str(run)
    assert "cannot import mapping module 'mycompany.zonesync_mappings'" in run.stderr
    assert "PYTHONPATH" in run.stderr
    assert not intranet.exists() or not sa.inspect(sa.create_engine(f"sqlite:///{intranet}")).get_table_names()


def test_a_command_run_where_there_are_no_zone_databases_says_so_and_creates_none(tmp_path: Path) -> None:
    elsewhere = Cli(tmp_path, {})  # the default SQLite files, relative to a directory where init never ran

    run = elsewhere("status")

    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1, str(run)
    assert f"ZONESYNC_INTRANET_URL: no database at {tmp_path.resolve()}/.zonesync/intranet.db" in run.stderr
    assert not (tmp_path / ".zonesync").exists()


OWN_MAPPING = """
import pandera.polars as pa
from zonesync.schemas.mapping import SyncMapping

class AirportTarget(pa.DataFrameModel):
    airport_id: int
    city: str

AIRPORTS = SyncMapping(name="airports", direction="intranet_to_internet", source_table="airport",
                       target_table="airport", keys=("airport_id",), model=AirportTarget)
"""


def test_init_of_one_s_own_mappings_without_the_zones_urls_says_so_and_creates_nothing(tmp_path: Path) -> None:
    """The mapping section followed literally (a mapping module, no zone URLs): not the demo's SQLite files."""
    (tmp_path / "my_mappings.py").write_text(OWN_MAPPING)
    cli = Cli(tmp_path, {"ZONESYNC_MAPPING_MODULES": "my_mappings", "PYTHONPATH": str(tmp_path)})

    run = cli("init")

    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1, str(run)
    assert "ZONESYNC_INTRANET_URL and ZONESYNC_INTERNET_URL are not set" in run.stderr
    assert "docs/own-databases.md" in run.stderr and not (tmp_path / ".zonesync").exists()
