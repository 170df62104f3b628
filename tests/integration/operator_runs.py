"""Real runs that emit each event an operator must act on (`python -m tests.integration.operator_runs`, with the
ZONESYNC_* settings of a demo zone pair and PREFECT_API_URL of a server; test_automations.py runs it):

- a retry sync quarantines merchant 13 of the demo data (`zonesync.rows.quarantined`) after taking over the
  merchants lease a run elsewhere let expire (`zonesync.lease.taken-over`);
- a row of the intranet zone changed without setting its flag back to false, and the scheduled reconciliation
  finds it (`zonesync.contract.broken`);
- an end-day check quarantines invalid payments, so the zones differ for the day (`zonesync.reconciliation.differs`);
- an end-day check while another machine's run holds its job fails (`zonesync.end-day.failed`);
- a retry sync after the target's fee column became an integer stops the merchants mapping
  (`zonesync.schema.broken`);
- one client address passes the HTTP API's failed-key limit (`zonesync.api.auth-refused`: the guard's own
  counter, fed as the guard feeds it for each wrong key).
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tests.integration.helpers import execute, seed
from zonesync.deployments.auth_limit import FailedAuthLimit
from zonesync.flows.end_day_check import JOB_LEASE, EndDayFailed, end_day_check
from zonesync.flows.reconcile_zones import reconcile_zones
from zonesync.flows.retry_sync import retry_sync
from zonesync.tasks.bookkeeping.lease import mapping_lease
from zonesync.tasks.bookkeeping.tables import sync_lease, utc_now
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones.engines import get_engine

ELSEWHERE = "another-host:4242:0badcafe"  # a holder on another machine: only its expiry frees its lease
FLOODING_ADDRESS = "192.0.2.7"  # a documentation address (RFC 5737)
CHANGED_BEHIND = 2  # the merchant an application changes without setting its flag back to false


def held_elsewhere(lease: str, expires_in: float) -> None:
    """The lease as a run on another machine holds it (expired already when `expires_in` is negative)."""
    until = utc_now() + timedelta(seconds=expires_in)
    execute(get_engine("intranet"), sa.insert(sync_lease).values(name=lease, holder=ELSEWHERE, expires_at=until))


def main() -> None:
    day = demo_data.DEMO_BUSINESS_DATE
    seed(get_engine("intranet"), "merchant", demo_data.merchants(20), ("merchant_id",))
    held_elsewhere(mapping_lease("merchants"), expires_in=-60)
    assert retry_sync().total("quarantined") == 1
    changed = f"UPDATE merchant SET merchant_name = 'Renamed' WHERE merchant_id = {CHANGED_BEHIND}"  # flag kept
    execute(get_engine("intranet"), changed)
    assert [check.broken_keys for check in reconcile_zones(mappings=["merchants"]).checks] == [((CHANGED_BEHIND,),)]

    seed(get_engine("internet"), "payment", demo_data.payments(60), ("payment_id",))
    assert end_day_check(day).status == "PARTIAL"

    held_elsewhere(JOB_LEASE, expires_in=600)
    try:
        end_day_check(day)
    except EndDayFailed:
        pass
    else:
        raise AssertionError("the end-day check ran while another run held its job")

    fee_becomes_an_integer()
    seed(get_engine("intranet"), "merchant", demo_data.merchants(21).tail(1), ("merchant_id",))
    assert retry_sync(mappings=["merchants"]).mappings[0].status == "error"

    limit = FailedAuthLimit(3)
    for _ in range(3):
        limit.failed(FLOODING_ADDRESS)
    assert limit.retry_after(FLOODING_ADDRESS) is not None


def fee_becomes_an_integer() -> None:
    """The internet zone's merchant.fee declared INTEGER (SQLite changes a column's type by copying its table)."""
    with get_engine("internet").begin() as conn:
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'merchant'").scalar_one()
        assert "fee VARCHAR(20)" in ddl, ddl
        conn.exec_driver_sql(ddl.replace("merchant", "merchant_copy", 1).replace("fee VARCHAR(20)", "fee INTEGER"))
        conn.exec_driver_sql("INSERT INTO merchant_copy SELECT * FROM merchant")
        conn.exec_driver_sql("DROP TABLE merchant")
        conn.exec_driver_sql("ALTER TABLE merchant_copy RENAME TO merchant")


if __name__ == "__main__":
    main()
