"""`zonesync schema diff` / `schema accept`, `status` and `init` on the schema contract, through the console
script (a real subprocess) against a real PostgreSQL: what an operator sees after a DBA's ALTER."""

from __future__ import annotations

import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.console import Cli
from tests.integration.helpers import execute, seed
from zonesync.tasks.schema.contract import accepted_shape
from zonesync.tasks.setup import demo_data

POSTGRESQL_ONLY = pytest.mark.parametrize("backend", [backend_param("postgresql")])


@POSTGRESQL_ONLY
def test_an_operator_sees_a_breaking_change_and_accepts_it(demo_zones: ZonePair, cli: Cli) -> None:
    seed(demo_zones.intranet, "merchant", demo_data.merchants(5), ("merchant_id",))
    assert cli("init").code == 0
    assert cli("schema", "diff").stdout.count(": not accepted yet") == 2
    assert cli("schema", "accept", "merchants", "--by", "first@ops").code == 0

    execute(demo_zones.internet, "ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,1)")
    diff = cli("schema", "diff", "-m", "merchants")
    status = cli("status")
    init = cli("init")

    assert diff.code == 3, str(diff)
    assert "mapping merchants: 1 breaking change(s), accepted " in diff.stdout and "by first@ops" in diff.stdout
    assert diff.row("breaking")[1:] == ["internet", "merchant", "fee", "numeric(18, 2) not null",
                                        "numeric(18, 1) not null", "fewer digits after the point"]  # fmt: skip
    assert status.row("merchants")[-1] == "1 breaking change(s)", str(status)
    assert "column 'fee' of 'merchant': numeric(18, 1) keeps 1 digit(s) after the point, the model 2" in init.stdout

    accepted = cli("schema", "accept", "merchants", "--by", "second@ops")
    assert accepted.code == 0, str(accepted)
    assert "breaking: internet zone, table 'merchant', column 'fee'" in accepted.stdout
    assert "marked unsynced" not in accepted.stdout  # nothing was synced yet
    assert cli("schema", "diff").code == 0
    found = accepted_shape(demo_zones.intranet, "merchants")
    assert found is not None and found.accepted_by == "second@ops" and "fewer digits after the point" in found.note


@POSTGRESQL_ONLY
def test_accepting_an_unknown_mapping_is_one_line(demo_zones: ZonePair, cli: Cli) -> None:
    run = cli("schema", "accept", "no-such-mapping")
    assert run.code == 2 and len(run.stderr.strip().splitlines()) == 1 and "no-such-mapping" in run.stderr, str(run)
