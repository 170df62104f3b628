"""The real `end_day_check` Prefect flow under the session's test harness, on each backend.

What operations read every morning must be right: the intranet payments, the internet flags, the quarantine,
the `batch_job` row and the summary artifact, also when the run is repeated, overlaps another, or loses a
database halfway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from prefect.settings import PREFECT_API_URL

import zonesync.flows.end_day_check as end_day_module
from tests.artifact_layout import clipped_tables, table_widths
from tests.conftest import ZonePair
from tests.integration.helpers import errors_by_key, flow_run_artifacts, jobs, mapped, seed, source_rows, target_rows
from zonesync.flows.end_day_check import JOB_LEASE, EndDayFailed, end_day_check
from zonesync.schemas.examples import PAYMENTS
from zonesync.tasks.bookkeeping.lease import Lease
from zonesync.tasks.prefect_tasks import sync_mapping
from zonesync.tasks.results import EndDayReport
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones.engines import get_engine

pytestmark = pytest.mark.usefixtures("prefect_harness")

DAY = demo_data.DEMO_BUSINESS_DATE
PAYMENT_COUNT = 120


@pytest.fixture
def payments(demo: ZonePair) -> pl.DataFrame:
    """The demo payments of the business date in the internet zone (successful, failed, pending, invalid)."""
    frame = demo_data.payments(PAYMENT_COUNT)
    seed(demo.internet, "payment", frame, ("payment_id",))
    return frame


def run(**parameters: Any) -> tuple[EndDayReport, str]:
    """Run the flow; return its report and its flow run id."""
    state = end_day_check(**parameters, return_state=True)
    report = state.result()
    assert isinstance(report, EndDayReport)
    return report, str(state.state_details.flow_run_id)


def successful_ids(frame: pl.DataFrame) -> set[int]:
    """Payments the end-day check must bring back (status S), invalid ones included."""
    return set(frame.filter(pl.col("status") == "S")["payment_id"].to_list())


def no_secret(pair: ZonePair, *texts: Any) -> None:
    for password in pair.passwords:
        for text in texts:
            assert password not in str(text), "a password leaked"


def test_a_day_of_payments_comes_back_with_its_report_and_ledger_row(demo: ZonePair, payments: pl.DataFrame) -> None:
    report, flow_run_id = run(business_date=DAY)

    eligible = successful_ids(payments)
    invalid = set(demo_data.INVALID_PAYMENTS)
    # Intranet: every valid successful payment, exactly; failed, pending and invalid ones are not there.
    intranet = target_rows(demo.intranet, PAYMENTS)
    internet = source_rows(demo.internet, PAYMENTS)
    assert {key[0] for key in intranet} == eligible - invalid
    for key, values in intranet.items():
        assert values == mapped(internet[key])
    # Internet: exactly the synced rows are flagged; the invalid ones stay unflagged and are quarantined.
    assert {key[0] for key, values in internet.items() if values["__flag"]} == eligible - invalid
    quarantine = errors_by_key(demo.intranet, PAYMENTS, open_only=True)
    assert {key[0] for key in quarantine} == invalid
    assert all(row["reason"] == "validation" for row in quarantine.values())
    assert "amount" in quarantine[(7,)]["detail"] and "reference" in quarantine[(8,)]["detail"]

    result = report["payments"]
    assert (result.status, result.read, result.flagged, result.quarantined) == (
        "partial", len(eligible), len(eligible) - len(invalid), len(invalid)
    )  # fmt: skip
    assert report.status == "PARTIAL" and report.business_date == DAY
    [job] = jobs(demo.intranet)
    assert (job["job_name"], job["business_date"], job["status"], job["flow_run_id"]) == (
        "end-day-check", DAY, "PARTIAL", flow_run_id
    )  # fmt: skip
    assert (job["rows_eligible"], job["rows_synced"], job["rows_failed"]) == (
        len(eligible), len(eligible) - len(invalid), len(invalid)
    )  # fmt: skip
    assert job["finished_at"] >= job["started_at"] and job["id"] == report.job_id

    # The reconciliation names the two payments that did not make it, and nothing else.
    reconciliation = report.reconciliation("payments")
    assert not reconciliation.ok
    found = flow_run_artifacts(flow_run_id)
    assert {"end-day-summary", "end-day-report", "end-day-reconciliation"} <= set(found)
    summary = found["end-day-summary"].data
    assert summary == report.summary and found["end-day-summary"].type == "markdown"
    assert f"End-day check {DAY}: PARTIAL" in summary and "- **payments** — partial: " in summary
    assert len(table_widths(summary)) == 1 and not clipped_tables(summary), summary  # the totals: every column shown
    for payment_id in invalid:
        assert f'{{"payment_id":{payment_id}}}' in summary
    table = json.loads(found["end-day-report"].data)
    assert [(row["mapping"], row["flagged"], row["quarantined"]) for row in table] == [
        ("payments", len(eligible) - len(invalid), len(invalid))
    ]
    no_secret(demo, summary, table, job["message"], found["end-day-reconciliation"].data)


def test_a_clean_day_is_success_and_the_zones_agree(demo: ZonePair) -> None:
    frame = demo_data.payments(40).filter(~pl.col("payment_id").is_in(list(demo_data.INVALID_PAYMENTS)))
    seed(demo.internet, "payment", frame, ("payment_id",))

    report, _ = run(business_date=DAY)

    assert report.status == "SUCCESS" and report.ok
    assert report.reconciliation("payments").ok
    assert len(target_rows(demo.intranet, PAYMENTS)) == len(successful_ids(frame))
    assert [job["status"] for job in jobs(demo.intranet)] == ["SUCCESS"]


def test_no_eligible_payment_logs_no_record(demo: ZonePair, caplog: pytest.LogCaptureFixture) -> None:
    failed_only = demo_data.payments(30).filter(pl.col("status") != "S")
    seed(demo.internet, "payment", failed_only, ("payment_id",))

    report, _ = run(business_date=DAY)

    assert report["payments"].status == "no_record" and report.status == "NO_RECORD"
    assert "no record" in caplog.text
    assert target_rows(demo.intranet, PAYMENTS) == {}
    [job] = jobs(demo.intranet)
    assert (job["status"], job["rows_eligible"], job["rows_synced"], job["rows_failed"]) == ("NO_RECORD", 0, 0, 0)


def test_a_second_run_for_the_same_date_is_safe_and_linked_to_the_first(demo: ZonePair, payments: pl.DataFrame) -> None:
    first, _ = run(business_date=DAY)
    intranet_after_first = target_rows(demo.intranet, PAYMENTS)

    second, flow_run_id = run(business_date=DAY)

    assert target_rows(demo.intranet, PAYMENTS) == intranet_after_first
    result = second["payments"]
    assert (result.read, result.upserted, result.quarantined) == (2, 0, 2)  # only the invalid ones are read again
    quarantine = errors_by_key(demo.intranet, PAYMENTS, open_only=True)
    assert {row["attempts"] for row in quarantine.values()} == {2}
    assert [job["status"] for job in jobs(demo.intranet)] == ["PARTIAL", "PARTIAL"]
    summary = flow_run_artifacts(flow_run_id)["end-day-summary"].data
    assert f"Other runs for {DAY}" in summary and f"| {first.job_id} | PARTIAL |" in summary


def test_an_overlapping_run_is_refused_and_says_so_in_the_ledger(demo: ZonePair, payments: pl.DataFrame) -> None:
    other = Lease(get_engine("intranet"), JOB_LEASE, ttl=60)
    assert other.try_acquire()  # another end-day check (any process, any machine) is running
    try:
        with pytest.raises(EndDayFailed, match="busy"):
            end_day_check(business_date=DAY)
    finally:
        other.release()

    assert target_rows(demo.intranet, PAYMENTS) == {}
    [job] = jobs(demo.intranet)
    assert job["status"] == "FAILED" and "another zonesync run is working on it" in job["message"]


def test_the_internet_zone_down_fails_the_run_visibly_with_the_reason_in_the_ledger(
    demo: ZonePair, payments: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(end_day_module, "sync_mapping", sync_mapping.with_options(retry_delay_seconds=0))
    monkeypatch.setattr(end_day_module, "reconcile", end_day_module.reconcile.with_options(retry_delay_seconds=0))
    password = "Sup3r-s3cret-pw"
    monkeypatch.setenv("ZONESYNC_INTERNET_URL", f"postgresql://zonesync:{password}@127.0.0.1:1/internet")
    from zonesync.schemas.settings import get_settings
    from zonesync.tasks.zones.engines import dispose_engines

    get_settings.cache_clear()
    dispose_engines()

    with pytest.raises(EndDayFailed) as failed:
        end_day_check(business_date=DAY)

    [job] = jobs(demo.intranet)
    assert job["status"] == "FAILED" and job["finished_at"] is not None
    assert "internet" in job["message"] and "payments" in job["message"]
    assert failed.value.report.summary and "FAILED" in failed.value.report.summary
    for text in (job["message"], str(failed.value), failed.value.report.summary):
        assert password not in text
    assert target_rows(demo.intranet, PAYMENTS) == {}


def test_the_business_date_defaults_to_the_day_that_ended_in_the_business_timezone(
    demo: ZonePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZONESYNC_BUSINESS_TIMEZONE", "Pacific/Kiritimati")  # UTC+14: often a day ahead of UTC
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from zonesync.schemas.settings import get_settings

    get_settings.cache_clear()
    report, _ = run()
    assert report.business_date == datetime.now(ZoneInfo("Pacific/Kiritimati")).date() - timedelta(days=1)
    assert jobs(demo.intranet)[0]["business_date"] == report.business_date


def test_the_summary_can_be_read_back_with_the_prefect_cli(demo: ZonePair, payments: pl.DataFrame) -> None:
    run(business_date=DAY)
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    shown = subprocess.run(
        [sys.executable, "-m", "prefect", "artifact", "inspect", "end-day-summary"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"End-day check {DAY}: PARTIAL" in shown.stdout
