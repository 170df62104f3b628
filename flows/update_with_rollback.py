"""Update with rollback: update the source row and the target row as one unit.

Update the source table → update the target table → both succeeded? (yes: response success; no: roll back
both, response error). Done with a durable intent record holding the before-image, so a crash between the
two commits is repaired by the next run of any flow, or by `zonesync recover`.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.states import State

from zonesync.flows.outcomes import ROLLED_BACK, completed, failed
from zonesync.flows.parameters import flow_keeping_out
from zonesync.schemas.registry import get_mapping
from zonesync.tasks.results import UpdateResult
from zonesync.tasks.update.rollback import update_record


def updated(result: UpdateResult) -> State:
    """Completed (both zones hold the new values), or Failed "RolledBack" (both keep their previous ones)."""
    if result.status == "success":
        return completed(result, result.message)
    return failed(result, f"{result.reason}: {result.message}", ROLLED_BACK)


@flow_keeping_out(
    "changes", outcome=updated, name="update-with-rollback",
    description="Update one record in both zones, or in neither.",
)  # fmt: skip
def update_with_rollback(mapping: str, key: dict[str, Any], changes: dict[str, Any]) -> UpdateResult:
    """Change the source row with `key` (source column names) by `changes`, and its target row with it.

    Args:
        mapping: the mapping's name, e.g. merchants.
        key: the row's key, source column names, e.g. {"merchant_id": 703}.
        changes: the new values, source column names, e.g. {"fee": "2.75"}.
    """
    declared = get_mapping(mapping)
    result = update_record(declared, key, changes)
    logger = get_run_logger()
    shown = declared.shown_key(result.key)
    if result.status == "success":
        logger.info("%s %s: %s", mapping, shown, result.message)
    else:
        logger.error("%s %s: %s (%s): both zones keep their previous values", mapping, shown, result.message,
                     result.reason)  # fmt: skip
    return result
