"""Run states that tell the truth: each business outcome of each flow is its own named Prefect state, on the
session's Prefect server, while a Python caller still gets the result object whatever the state."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.states import State

from tests.conftest import ZonePair
from tests.integration.console import SQLITE_ONLY
from tests.integration.helpers import execute, jobs, seed
from zonesync.flows.delete_with_rollback import delete_with_rollback
from zonesync.flows.end_day_check import end_day_check
from zonesync.flows.realtime_push import realtime_push
from zonesync.flows.reconcile_zones import SUMMARY_KEY, reconcile_zones
from zonesync.flows.retry_sync import retry_sync
from zonesync.flows.update_with_rollback import update_with_rollback
from zonesync.tasks.reconcile.findings import ContractReport
from zonesync.tasks.results import EndDayReport, PushResult, UpdateResult
from zonesync.tasks.setup import demo_data

pytestmark = [pytest.mark.usefixtures("prefect_harness"), SQLITE_ONLY]

MERCHANT: dict[str, Any] = {
    "merchant_id": 1, "merchant_name": "Toko", "status": "A", "fee": "1.50", "email": None, "tax_id": "NPWP-1",
    "updated_at": "2026-11-26T10:00:00+07:00",
}  # fmt: skip


def stored(state: State) -> tuple[str, str]:
    """The type and name of the flow run's state as the Prefect server keeps it (what the run list shows)."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)  # type: ignore[arg-type]
    assert run.state is not None
    return run.state.type.value, run.state.name


@pytest.mark.parametrize(
    ("record", "status", "named"),
    [
        (MERCHANT, "success", ("COMPLETED", "Completed")),
        (MERCHANT | {"fee": "-1.00"}, "pending", ("COMPLETED", "Pending")),  # the target model refuses it
        (MERCHANT | {"fee": "one"}, "error", ("FAILED", "Refused")),  # the source refuses it
    ],
    ids=["success", "pending", "refused"],
)
def test_each_push_outcome_is_a_named_state_and_the_caller_still_gets_the_result(
    demo: ZonePair, record: dict[str, Any], status: str, named: tuple[str, str]
) -> None:
    state = realtime_push("merchants", [record], return_state=True)
    result = realtime_push("merchants", [record | {"merchant_id": 2}])

    assert stored(state) == named
    assert isinstance(result, PushResult) and result.status == status


@pytest.mark.parametrize(
    ("changes", "status", "named"),
    [({"fee": "2.00"}, "success", ("COMPLETED", "Completed")), ({"fee": "-2.00"}, "error", ("FAILED", "RolledBack"))],
    ids=["updated", "rolled-back"],
)
def test_an_update_rolled_back_is_a_failed_run_named_so_and_the_caller_still_gets_the_result(
    demo: ZonePair, changes: dict[str, Any], status: str, named: tuple[str, str]
) -> None:
    assert realtime_push("merchants", [MERCHANT]).status == "success"

    state = update_with_rollback("merchants", {"merchant_id": 1}, changes, return_state=True)
    result = update_with_rollback("merchants", {"merchant_id": 1}, changes)

    assert stored(state) == named
    assert isinstance(result, UpdateResult) and result.status == status


def test_a_delete_rolled_back_is_a_failed_run_named_so(demo: ZonePair) -> None:
    assert realtime_push("merchants", [MERCHANT, MERCHANT | {"merchant_id": 2}]).status == "success"

    deleted_state = delete_with_rollback("merchants", {"merchant_id": 1}, return_state=True)
    missing_state = delete_with_rollback("merchants", {"merchant_id": 1}, return_state=True)  # gone already
    result = delete_with_rollback("merchants", {"merchant_id": 2})

    assert (stored(deleted_state), stored(missing_state)) == (("COMPLETED", "Completed"), ("FAILED", "RolledBack"))
    assert isinstance(result, UpdateResult) and result.status == "success"


def test_retry_runs_are_named_no_record_partial_completed_and_failed(demo: ZonePair) -> None:
    assert stored(retry_sync(return_state=True)) == ("COMPLETED", "NoRecord")

    insert = sa.text(
        "INSERT INTO merchant (merchant_id, merchant_name, status, fee, updated_at, is_sync) "
        "VALUES (:id, 'Toko', 'A', :fee, '2026-11-26 03:00:00', false)"
    )
    execute(demo.intranet, insert, [{"id": 1, "fee": "1.00"}, {"id": 2, "fee": "-1.00"}])
    partial = retry_sync(return_state=True)
    assert stored(partial) == ("COMPLETED", "Partial")
    assert partial.result().total("quarantined") == 1

    execute(demo.intranet, "UPDATE merchant SET fee = '1.00' WHERE merchant_id = 2")  # the quarantined row mended
    assert stored(retry_sync(return_state=True)) == ("COMPLETED", "Completed")

    execute(demo.intranet, insert, {"id": 3, "fee": "1.00"})
    execute(demo.internet, "DROP TABLE merchant")  # every mapping fails
    failed = retry_sync(return_state=True)
    report = retry_sync()  # a Python caller gets the report, not an exception
    assert stored(failed) == ("FAILED", "Failed")
    assert report.job_status() == "FAILED" and not report.ok


def test_end_day_runs_are_named_no_record_and_partial(demo: ZonePair) -> None:
    day = demo_data.DEMO_BUSINESS_DATE
    assert stored(end_day_check(day, return_state=True)) == ("COMPLETED", "NoRecord")

    payments = demo_data.payments(60)  # some of them invalid: quarantined
    seed(demo.internet, "payment", payments, ("payment_id",))
    state = end_day_check(day, return_state=True)
    assert stored(state) == ("COMPLETED", "Partial")
    report = state.result()
    assert isinstance(report, EndDayReport) and report.status == "PARTIAL"
    [job] = [job for job in jobs(demo.intranet) if job["id"] == report.job_id]
    assert job["status"] == "PARTIAL" and "row(s) quarantined" in job["message"], job  # it says why


def test_the_scheduled_reconciliation_ends_contract_broken_when_a_row_changed_behind_its_flag(demo: ZonePair) -> None:
    seed(demo.intranet, "merchant", demo_data.merchants(10), ["merchant_id"])
    retry_sync()
    in_step = reconcile_zones(return_state=True)
    execute(demo.intranet, "UPDATE merchant SET merchant_name = 'behind its back' WHERE merchant_id = 4")

    broken = reconcile_zones(return_state=True)
    report = reconcile_zones(mappings=["merchants"])

    assert stored(in_step) == ("COMPLETED", "Completed")
    assert stored(broken) == ("FAILED", "ContractBroken") and "1 row(s) flagged synced differ" in str(broken.message)
    assert isinstance(report, ContractReport) and [c.broken_keys for c in report.checks] == [((4,),)]
    summary = Artifact.get(SUMMARY_KEY)
    shown = str(summary.data).replace("\\", "") if summary else ""
    assert "Keys: merchant_id=4" in shown and "CONTRACT BROKEN" in shown, shown
