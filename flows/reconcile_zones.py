"""Scheduled reconciliation: every mapping's synced rows against the other zone.

The retry carries rows whose flag is false; a row changed without setting its flag back (a writer that breaks the
writers' contract) is never carried, and nothing else would notice. This flow compares each mapping's rows
flagged synced with the other zone (in the databases, by row hashes; suspects re-checked) and ends in the state
"ContractBroken" with a `zonesync.contract.broken` event when any differ. It reads only: runs may overlap.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import State

from zonesync.flows.outcomes import CONTRACT_BROKEN, completed, failed, flow_with_outcome
from zonesync.tasks.prefect_tasks import check_run_settings, contract_check, failure_message
from zonesync.tasks.reconcile.findings import ContractReport
from zonesync.tasks.reconcile.report import contract_markdown

SUMMARY_KEY = "reconcile-zones-summary"


def reconciled(report: ContractReport) -> State:
    """Completed when every mapping is in step; Failed "ContractBroken" when rows broke the contract; Failed when
    a mapping could not be checked."""
    if report.broken:
        return failed(report, report.headline(), CONTRACT_BROKEN)
    if report.errors:
        return failed(report, report.headline())
    return completed(report, report.headline())


@flow_with_outcome(
    reconciled, name="reconcile-zones",
    description="Scheduled reconciliation: every mapping's synced rows against the other zone.",
)  # fmt: skip
def reconcile_zones(mappings: list[str] | None = None) -> ContractReport:
    """Check every (or the named) mapping, in both directions, for rows flagged synced that the other zone holds
    otherwise or not at all.

    Args:
        mappings: mapping names to check; none (the default) checks every registered mapping.
    """
    report = ContractReport()
    for mapping in check_run_settings(None, mappings):
        state = contract_check(mapping.name, return_state=True)
        if state.is_completed():
            report.checks.append(state.result())
        else:
            report.errors[mapping.name] = failure_message(state)
            get_run_logger().error("%s: not checked: %s", mapping.name, report.errors[mapping.name])
    create_markdown_artifact(markdown=contract_markdown(report), key=SUMMARY_KEY, description="Reconciliation")
    return report
