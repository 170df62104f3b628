"""Real-time push: an application's records go into the source zone, then straight to the target.

Insert into the source table → success? (no: response error) → insert into the target table → success?
(no: log error, record in sync_error, leave is_sync false for the cron retry: pending) → patch is_sync to
true → response success. The HTTP entry point runs the same function without a flow run per request.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.states import State

from zonesync.flows.outcomes import PENDING, REFUSED, completed, failed
from zonesync.flows.parameters import flow_keeping_out
from zonesync.schemas.registry import get_mapping
from zonesync.tasks.push.pusher import push_records
from zonesync.tasks.results import PushResult


def pushed(result: PushResult) -> State:
    """Completed (in both zones), Completed "Pending" (the cron retry carries them), Failed "Refused" (the
    source refused them: nothing written)."""
    if result.status == "success":
        return completed(result, result.message)
    if result.status == "pending":
        return completed(result, result.message, PENDING)
    return failed(result, f"{result.reason}: {result.message}", REFUSED)


@flow_keeping_out(
    "records", outcome=pushed, name="realtime-push",
    description="Insert records in the source zone and push them to the target now.",
)  # fmt: skip
def realtime_push(mapping: str, records: list[dict[str, Any]]) -> PushResult:
    """Push records (source column names) through one mapping; the result gives the status per key.

    Args:
        mapping: the mapping's name, e.g. merchants.
        records: the records, each an object of source column names, e.g. [{"merchant_id": 703, ...}].
    """
    get_mapping(mapping)  # an unknown mapping is a ConfigError, not a result
    result = push_records(mapping, records)
    logger = get_run_logger()
    if result.status == "success":
        logger.info("%s: %s", mapping, result.message)
    elif result.status == "pending":  # nothing is lost: a warning, not an error
        logger.warning("%s: pending at stage %s (%s): %s", mapping, result.stage, result.reason, result.message)
    else:
        logger.error("%s: source insert failed (%s), nothing written: %s", mapping, result.reason, result.message)
    return result
