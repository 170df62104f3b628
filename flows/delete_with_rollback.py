"""Delete with rollback: the source row and its target copy go as one unit, or neither does.

Delete the source row → apply the mapping's `on_delete` policy to the target copy (archive, mark, delete) → both
succeeded? (yes: response success; no: both zones keep the row, response error). Two-phase commit where both
databases offer it, else a durable intent record: a crash between the two commits is repaired by the next run of
any flow, or by `zonesync recover` (the row restored in the target, or its delete completed).
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.states import State

from zonesync.flows.outcomes import ROLLED_BACK, completed, failed
from zonesync.flows.parameters import flow_keeping_out
from zonesync.schemas.registry import get_mapping
from zonesync.tasks.results import UpdateResult
from zonesync.tasks.update.deletion import delete_record


def deleted(result: UpdateResult) -> State:
    """Completed (gone from both zones), or Failed "RolledBack" (both keep it)."""
    if result.status == "success":
        return completed(result, result.message)
    return failed(result, f"{result.reason}: {result.message}", ROLLED_BACK)


@flow_keeping_out(outcome=deleted, name="delete-with-rollback",
                  description="Delete one record from both zones, or from neither.")  # fmt: skip
def delete_with_rollback(mapping: str, key: dict[str, Any]) -> UpdateResult:
    """Delete the source row with `key` (source column names), and its target copy by the mapping's on_delete.

    Args:
        mapping: the mapping's name, e.g. merchants.
        key: the row's key, source column names, e.g. {"merchant_id": 703}.
    """
    declared = get_mapping(mapping)
    result = delete_record(declared, key)
    logger = get_run_logger()
    shown = declared.shown_key(result.key)
    if result.status == "success":
        logger.info("%s %s: %s", mapping, shown, result.message)
    else:
        logger.error("%s %s: %s (%s): both zones keep the row", mapping, shown, result.message, result.reason)
    return result
