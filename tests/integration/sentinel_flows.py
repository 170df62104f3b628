"""The four flows called from Python, as an application would, with sentinel values in every record
(run in its own process by test_nothing_sensitive.py, which scans what it prints and what Prefect kept).

Each call is made to go through a failure path too: a record the target model refuses, one the target database
refuses, an update rolled back, a row the end-day check quarantines. It prints each result whole but for its
keys, since a value in a result's message is a value shown to whoever logs it. (The keys are the caller's own
data, given back so that it can match outcomes to records, even a sensitive key.)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import date
from typing import Any

from zonesync.flows.end_day_check import end_day_check
from zonesync.flows.realtime_push import realtime_push
from zonesync.flows.retry_sync import retry_sync
from zonesync.flows.update_with_rollback import update_with_rollback

NEGATIVE_FEE = "-8675309.41"  # the refused number the scan looks for


def merchant(merchant_id: int, value: str, **changes: Any) -> dict[str, Any]:
    """A merchant record (source column names) whose name and email carry the value sentinel."""
    return {
        "merchant_id": merchant_id, "merchant_name": f"{value} {merchant_id}", "status": "A", "fee": "1.50",
        "email": f"{value}.{merchant_id}@example.com", "tax_id": os.environ["SENTINEL_TAX"],
        "updated_at": "2026-03-04T05:06:07.891011+00:00",
    } | changes  # fmt: skip


def without_keys(data: Any) -> Any:
    """A result's (or an HTTP answer's) data without the keys it gives back to the caller."""
    if isinstance(data, dict):
        return {name: without_keys(value) for name, value in data.items() if name not in ("key", "keys")}
    if isinstance(data, list):
        return [without_keys(item) for item in data]
    return data


def show(outcome: str, result: Any) -> dict[str, Any]:
    """Print a result but for its keys (a value in its message shows up in this process's output); return it."""
    shown = asdict(result)
    print(outcome, json.dumps(without_keys(shown), default=str))
    return shown


def main() -> None:
    value, duplicate_email = os.environ["SENTINEL_VALUE"], os.environ["SENTINEL_TAKEN_EMAIL"]
    outcomes = {
        "push": show("push", realtime_push("merchants", [merchant(9001, value)]))["status"],
        "push-refused-by-model": show("push", realtime_push("merchants", [merchant(9002, value, fee=NEGATIVE_FEE)]))[
            "status"
        ],
        "push-refused-by-target": show(
            "push", realtime_push("merchants", [merchant(9003, value, email=duplicate_email)])
        )["status"],
        "push-refused-by-source": show("push", realtime_push("merchants", [merchant(9004, value, fee=f"{value}")]))[
            "status"
        ],
    }
    account = os.environ["SENTINEL_ACCOUNT"]  # a key declared sensitive: it must not be shown either
    outcomes["account push"] = show(
        "push", realtime_push("accounts", [{"account_no": account, "holder": value, "balance": "1.00"}])
    )["status"]
    outcomes["account push refused-by-model"] = show(
        "push", realtime_push("accounts", [{"account_no": f"{account}b", "holder": value, "balance": NEGATIVE_FEE}])
    )["status"]
    retried = retry_sync()
    print("retry", json.dumps(asdict(retried), default=str))
    outcomes["retry"] = {result.mapping: result.status for result in retried.mappings}
    renamed = {"merchant_name": f"{value} renamed"}
    outcomes["update"] = show("update", update_with_rollback("merchants", {"merchant_id": 9001}, renamed))["status"]
    kept_inside = {"merchant_name": value, "tax_id": os.environ["SENTINEL_TAX"][::-1]}  # refused: not carried
    outcomes["update-refused-kept-inside"] = show(
        "update", update_with_rollback("merchants", {"merchant_id": 9001}, kept_inside)
    )["status"]
    outcomes["update-refused-by-model"] = show(
        "update", update_with_rollback("merchants", {"merchant_id": 9001}, {"fee": NEGATIVE_FEE})
    )["status"]
    outcomes["update-refused-by-target"] = show(
        "update", update_with_rollback("merchants", {"merchant_id": 9001}, {"email": duplicate_email})
    )["status"]
    outcomes["account update"] = show(
        "update", update_with_rollback("accounts", {"account_no": account}, {"holder": f"{value} 2"})
    )["status"]
    outcomes["account update not found"] = show(
        "update", update_with_rollback("accounts", {"account_no": f"{account}zz"}, {"holder": value})
    )["status"]
    checked = end_day_check(date.fromisoformat(os.environ["SENTINEL_BUSINESS_DATE"]))
    print("end-day", json.dumps(asdict(checked), default=str))
    outcomes["end-day"] = checked.status
    print("OUTCOMES", json.dumps(outcomes))


if __name__ == "__main__":
    main()
