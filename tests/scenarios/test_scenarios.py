"""The specification's scenarios, told as the business tells them, run through the real flows on every backend.

Each test's docstring is the scenario in the specification's shape (steps, expected result); the test
follows the steps and checks the expected result in both zones.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from tests.conftest import ZonePair
from tests.integration.helpers import errors_by_key, jobs, mapped, seed, source_rows, target_rows
from zonesync.flows.end_day_check import end_day_check
from zonesync.flows.realtime_push import realtime_push
from zonesync.flows.retry_sync import retry_sync
from zonesync.flows.update_with_rollback import update_with_rollback
from zonesync.schemas import settings
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones import engines

pytestmark = pytest.mark.usefixtures("prefect_harness")

NEW_MERCHANT: dict[str, Any] = {
    "merchant_id": 9001, "merchant_name": "Warung Bu Sri", "status": "A", "fee": "1.75",
    "email": "bu.sri@example.com", "tax_id": "NPWP-00009001", "updated_at": "2026-11-26T08:15:00.250000+07:00",
}  # fmt: skip


def use_internet(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point zonesync's internet zone somewhere else (as when the link to the DMZ goes down and comes back)."""
    monkeypatch.setenv("ZONESYNC_INTERNET_URL", url)
    settings.get_settings.cache_clear()
    engines.dispose_engines()


def test_scenario_1_a_payment_channel_sees_a_new_merchant_immediately(bank: ZonePair) -> None:
    """Scenario 1: a payment channel sees a new merchant immediately

    | Step | Action | Description |
    | --- | --- | --- |
    | 1 | Register the merchant | The back office registers merchant 9001 through the real-time push |
    | 2 | Channel looks it up | The payment channel reads merchant 9001 in the internet zone |

    **Expected Result:** the push answers success; the channel sees the merchant as registered (name, fee to
    the cent, timestamp to the microsecond) without the internal tax id; the intranet row is flagged synced.
    """
    pushed = realtime_push("merchants", [NEW_MERCHANT])

    channel_view = target_rows(bank.internet, MERCHANTS)[(9001,)]
    record = source_rows(bank.intranet, MERCHANTS)[(9001,)]
    assert pushed.status == "success"
    assert channel_view == mapped(record)
    assert (channel_view["name"], channel_view["fee"]) == ("Warung Bu Sri", Decimal("1.75"))
    assert channel_view["updated_at"].isoformat() == "2026-11-26T01:15:00.250000+00:00"
    assert "tax_id" not in channel_view and record["__flag"] is True


def test_scenario_2_the_internet_database_is_down_during_a_push_and_the_cron_retry_catches_up(
    bank: ZonePair, unreachable_internet: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario 2: the internet database is down during a push; the cron retry catches up after it returns

    | Step | Action | Description |
    | --- | --- | --- |
    | 1 | Internet zone goes down | The internet database cannot be reached |
    | 2 | Register the merchant | The back office registers merchant 9001 through the real-time push |
    | 3 | Internet zone returns | The internet database is reachable again |
    | 4 | Cron retry runs | The scheduled retry sync picks up unsynced rows |

    **Expected Result:** the push answers pending (the record is safe in the intranet zone, unflagged, its failure
    recorded); after the retry the channel sees the merchant, the intranet row is flagged, the failure resolved.
    """
    use_internet(monkeypatch, unreachable_internet)
    pushed = realtime_push("merchants", [NEW_MERCHANT])
    assert (pushed.status, pushed.stage) == ("pending", "target")
    assert source_rows(bank.intranet, MERCHANTS)[(9001,)]["__flag"] is False
    assert errors_by_key(bank.intranet, MERCHANTS, open_only=True)[(9001,)]["reason"] == "target_error"

    use_internet(monkeypatch, bank.internet_url)
    report = retry_sync()

    record = source_rows(bank.intranet, MERCHANTS)[(9001,)]
    assert report["merchants"].flagged == 1
    assert target_rows(bank.internet, MERCHANTS)[(9001,)] == mapped(record) and record["__flag"] is True
    assert errors_by_key(bank.intranet, MERCHANTS, open_only=True) == {}


def test_scenario_3_an_update_the_target_rejects_leaves_both_zones_unchanged(bank: ZonePair) -> None:
    """Scenario 3: an update the target rejects leaves both zones unchanged

    | Step | Action | Description |
    | --- | --- | --- |
    | 1 | Two merchants are live | Merchants 9001 and 9002 are in both zones |
    | 2 | Update the email | The back office gives 9002 the login email of 9001 |
    | 3 | Internet zone refuses | A channel login email belongs to one merchant only |

    **Expected Result:** the update answers error with the reason; both zones hold 9002's previous values and
    the intranet row stays flagged synced (rolled back, not left half-applied).
    """
    other = {**NEW_MERCHANT, "merchant_id": 9002, "merchant_name": "Toko Pak Budi", "email": "budi@example.com"}
    assert realtime_push("merchants", [NEW_MERCHANT, other]).status == "success"
    before_intranet, before_internet = source_rows(bank.intranet, MERCHANTS), target_rows(bank.internet, MERCHANTS)

    updated = update_with_rollback("merchants", {"merchant_id": 9002}, {"email": NEW_MERCHANT["email"]})

    assert updated.status == "error" and updated.message
    assert source_rows(bank.intranet, MERCHANTS) == before_intranet
    assert target_rows(bank.internet, MERCHANTS) == before_internet
    assert before_intranet[(9002,)]["__flag"] is True


def test_scenario_4_a_day_of_payments_comes_back_at_end_of_day_with_a_correct_report(bank: ZonePair) -> None:
    """Scenario 4: a day of payments, some failed and some invalid, comes back at end of day

    | Step | Action | Description |
    | --- | --- | --- |
    | 1 | Customers pay | 60 payments of 25 November: successful (S), failed (F), pending (P); two S are invalid |
    | 2 | End-day batch runs | The end-day sync check runs for 25 November |
    | 3 | Operations read the report | The summary, the reconciliation and the batch_job row |

    **Expected Result:** every valid successful payment is in the system of record, exact, and flagged in the
    internet zone; failed and pending payments stay where they are; the two invalid ones are quarantined with
    their reasons; the batch_job row says PARTIAL with the right counts; the reconciliation names exactly the two
    missing payments, and its totals per status and currency are exact.
    """
    day = demo_data.DEMO_BUSINESS_DATE
    payments = demo_data.payments(60)
    seed(bank.internet, "payment", payments, ("payment_id",))
    successful = set(payments.filter(pl.col("status") == "S")["payment_id"].to_list())
    invalid = set(demo_data.INVALID_PAYMENTS)

    report = end_day_check(business_date=day)

    system_of_record = target_rows(bank.intranet, PAYMENTS)
    channel = source_rows(bank.internet, PAYMENTS)
    assert {key[0] for key in system_of_record} == successful - invalid
    assert all(system_of_record[key] == mapped(channel[key]) for key in system_of_record)
    assert {key[0] for key, row in channel.items() if row["__flag"]} == successful - invalid
    assert {key[0]: row["reason"] for key, row in errors_by_key(bank.intranet, PAYMENTS).items()} == dict.fromkeys(
        invalid, "validation"
    )
    [job] = jobs(bank.intranet)
    assert (job["status"], job["rows_eligible"], job["rows_synced"], job["rows_failed"]) == (
        "PARTIAL", len(successful), len(successful) - len(invalid), len(invalid)
    )  # fmt: skip
    assert report.status == "PARTIAL" and report.summary
