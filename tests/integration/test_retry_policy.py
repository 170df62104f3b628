"""The one retry policy (tasks/zones/retrying.py) on real servers and the real Prefect engine: each kind of failure is
run again by one layer only, so a deadlock is tried 4 times in all, not 4 per Prefect attempt (12)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import errors, jobs, rows, seed
from zonesync.flows.retry_sync import SyncReport, retry_sync
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones.retrying import DEADLOCK_ATTEMPTS

pytestmark = pytest.mark.usefixtures("prefect_harness")

# A target trigger that counts each attempt in a sequence (whose values a rollback does not take back) and then
# fails the way a deadlock victim does: the server's own deadlock error, every time.
DEADLOCKING_TARGET = {
    "postgresql": [
        "CREATE SEQUENCE zs_attempts",
        "CREATE FUNCTION zs_deadlock() RETURNS trigger AS $$ BEGIN PERFORM nextval('zs_attempts'); "
        "RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = 'deadlock_detected'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER zs_deadlock BEFORE INSERT ON merchant FOR EACH ROW EXECUTE FUNCTION zs_deadlock()",
    ],
    "mariadb": [
        "CREATE SEQUENCE zs_attempts",
        "CREATE TRIGGER zs_deadlock BEFORE INSERT ON merchant FOR EACH ROW BEGIN "
        "DECLARE attempt BIGINT DEFAULT NEXTVAL(zs_attempts); "
        "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Deadlock found (made by the test)'; END",
    ],
}
ATTEMPTS_SO_FAR = {
    "postgresql": "SELECT last_value - 1 + (CASE WHEN is_called THEN 1 ELSE 0 END) FROM zs_attempts",
    "mariadb": "SELECT NEXTVAL(zs_attempts) - 1",
}


@pytest.mark.parametrize("backend", [backend_param("postgresql"), backend_param("mariadb")])
def test_a_deadlock_is_tried_four_times_in_all_and_nothing_is_flagged(
    zones: ZonePair, use_zones: Callable[..., None], backend: str
) -> None:
    intranet_tables().create_all(zones.intranet)
    internet_tables().create_all(zones.internet)
    with zones.internet.begin() as conn:
        for statement in DEADLOCKING_TARGET[backend]:
            conn.exec_driver_sql(statement)
    seed(zones.intranet, "merchant", demo_data.merchants(5).with_columns(is_sync=pl.lit(False)), ("merchant_id",))
    use_zones(zones, modules="zonesync.schemas.examples")

    report = retry_sync(mappings=["merchants"])

    assert isinstance(report, SyncReport)
    with zones.internet.connect() as conn:
        attempts = conn.exec_driver_sql(ATTEMPTS_SO_FAR[backend]).scalar_one()
    # One Prefect attempt: the transaction had them all (a rollback does not take a sequence's value back, so
    # a count of 0 would mean the instrument failed, and 12 the policy).
    assert attempts == DEADLOCK_ATTEMPTS == 4
    merchants = report["merchants"]
    assert merchants.status == "error" and "deadlock" in merchants.message.lower()
    assert rows(zones.internet, "merchant") == []
    assert not any(row["is_sync"] for row in rows(zones.intranet, "merchant"))  # never flagged wrongly
    assert errors(zones.intranet) == []  # a deadlock is not the rows' fault: nothing quarantined
    [job] = jobs(zones.intranet)
    assert job["status"] == "FAILED"
