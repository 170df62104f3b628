"""The end-day check's report: what was synced, how the zones reconcile, what was quarantined.

The same Markdown goes to the `end-day-summary` artifact, into `EndDayReport.summary`, and to the terminal
(`zonesync end-day`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.settings import PREFECT_UI_URL
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from zonesync.tasks.bookkeeping import jobs
from zonesync.tasks.bookkeeping.jobs import END_DAY_JOB
from zonesync.tasks.reconcile.report import reconciliation_markdown, reconciliation_rows
from zonesync.tasks.reporting.sync_run import escape_inline, quarantine_markdown, result_rows, results_markdown
from zonesync.tasks.results import EndDayReport

JOB_NAME = END_DAY_JOB


def previous_business_date(timezone: str) -> date:
    """The business date that ended most recently in `timezone` (the one a run after midnight checks)."""
    return datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)


def summary_markdown(report: EndDayReport, intranet: Engine | None) -> str:
    """The end-day summary: outcome, per-mapping counts, reconciliation, quarantine sample, earlier runs."""
    lines = [f"# End-day check {report.business_date}: {report.status}", ""]
    if report.job_id is not None:
        lines.append(f"batch_job #{report.job_id}")
    if report.message:
        lines += ["", escape_inline(report.message)]
    lines += ["", "## Sync", "", *results_markdown(report.mappings)]
    for reconciliation in report.reconciliations:
        lines += ["", reconciliation_markdown(reconciliation)]
    for mapping, error in report.reconcile_errors.items():
        lines += ["", f"## Reconciliation of {mapping}", "", f"could not run: {escape_inline(error)}"]
    if intranet is not None:
        lines += quarantine_markdown(intranet, [r.mapping for r in report.mappings])
        lines += _earlier_runs(intranet, report)
    return "\n".join(lines)


def _earlier_runs(intranet: Engine, report: EndDayReport) -> list[str]:
    """The other runs for the same business date, linked to their flow runs when the Prefect UI is known."""
    try:
        runs = [job for job in jobs.jobs_for(intranet, JOB_NAME, report.business_date) if job["id"] != report.job_id]
    except SQLAlchemyError:  # the intranet zone is down: the summary still reports what this run knows
        return ["", "(earlier runs unknown: the intranet zone could not be read)"]
    if not runs:
        return []
    lines = ["", f"## Other runs for {report.business_date}", "", "| batch_job | status | started (UTC) | flow run |"]
    lines.append("| --- | --- | --- | --- |")
    for job in runs:
        lines.append(f"| {job['id']} | {job['status']} | {job['started_at']:%Y-%m-%d %H:%M:%S} | {_run_link(job)} |")
    return lines


def _run_link(job: dict[str, Any]) -> str:
    run_id = job.get("flow_run_id") or ""
    ui = PREFECT_UI_URL.value()
    return f"[{run_id[:8]}]({ui}/runs/flow-run/{run_id})" if run_id and ui else run_id[:8]


def publish_end_day(report: EndDayReport, intranet: Engine | None) -> None:
    """Render the summary into the report and publish it with the per-mapping and reconciliation tables."""
    report.summary = summary_markdown(report, intranet)
    title = f"End-day check {report.business_date}"
    create_markdown_artifact(markdown=report.summary, key="end-day-summary", description=title)
    create_table_artifact(table=result_rows(report.mappings), key="end-day-report", description=f"{title}: sync")
    rows = [row for reconciliation in report.reconciliations for row in reconciliation_rows(reconciliation)]
    if rows:
        create_table_artifact(table=rows, key="end-day-reconciliation", description=f"{title}: reconciliation")
