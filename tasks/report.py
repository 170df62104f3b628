"""Prefect artifacts and log lines that report a sync run: a summary, a table, and live progress."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.registry import all_mappings
from zonesync.tasks.bookkeeping import open_errors
from zonesync.tasks.sync import MappingSyncResult

RESULT_COLUMNS = ("read", "upserted", "flagged", "quarantined", "changed_in_flight")


class BatchProgress:
    """Logs each batch and keeps a progress artifact (0 to 100 %) current while a mapping syncs.

    The artifact is updated at most once per `interval` seconds: each update is a synchronous API call on
    the engine's main thread, and batches can be a fraction of a second apart.
    """

    def __init__(self, mapping: SyncMapping, flow_key: str, interval: float = 1.0) -> None:
        self.mapping = mapping
        self.flow_key = flow_key
        self.interval = interval
        self.artifact_id: Any = None
        self.published_at = 0.0
        self.logger = get_run_logger()

    def __call__(self, result: MappingSyncResult) -> None:
        """Called after every batch with the counts so far."""
        self.logger.info(
            "%s: batch %s, %s of %s rows read, %s upserted, %s quarantined",
            self.mapping.name, result.batches, result.read, result.pending_at_start, result.upserted,
            result.quarantined,
        )  # fmt: skip
        if time.monotonic() - self.published_at >= self.interval:
            self._publish(result)

    def finish(self, result: MappingSyncResult) -> None:
        """The final figure, whatever the throttle skipped."""
        if result.batches:
            self._publish(result)

    def _publish(self, result: MappingSyncResult) -> None:
        self.published_at = time.monotonic()
        total = max(result.pending_at_start, result.read, 1)
        percent = min(100.0, 100.0 * result.read / total)
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(
                progress=percent,
                key=f"{self.flow_key}-progress-{self.mapping.artifact_slug}",
                description=f"Rows of {self.mapping.name} read so far, of {result.pending_at_start} pending at start",
            )
        else:
            update_progress_artifact(self.artifact_id, progress=percent)


def result_rows(results: Sequence[MappingSyncResult]) -> list[dict[str, Any]]:
    """One JSON-ready row per mapping for table artifacts."""
    return [
        {"mapping": r.mapping, "status": r.status, **{c: getattr(r, c) for c in RESULT_COLUMNS},
         "seconds": round(r.seconds, 3), "message": r.message}
        for r in results
    ]  # fmt: skip


def results_markdown(results: Sequence[MappingSyncResult]) -> list[str]:
    """Per-mapping counts as a Markdown table, then each mapping's message."""
    lines = ["| mapping | status | " + " | ".join(RESULT_COLUMNS) + " | seconds |"]
    lines.append("|" + " --- |" * (len(RESULT_COLUMNS) + 3))
    for r in results:
        counts = " | ".join(str(getattr(r, c)) for c in RESULT_COLUMNS)
        lines.append(f"| {r.mapping} | {r.status} | {counts} | {r.seconds:.2f} |")
    for r in results:
        if r.message:
            lines += ["", f"**{r.mapping}**: {escape_markdown(r.message)}"]
    return lines


def quarantine_markdown(intranet: Engine, mappings: Sequence[str], limit: int = 20) -> list[str]:
    """A sample of the open quarantine of some mappings, with reasons (nothing when it is empty)."""
    try:
        rows = open_errors(intranet, mappings, limit=limit)
    except SQLAlchemyError:  # the intranet zone is down: the summary still reports what the run knows
        return ["", "(quarantine unknown: the intranet zone could not be read)"]
    if not rows:
        return []
    lines = ["", "## Quarantined records (sample)", "", "| mapping | record key | reason | detail | attempts |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for row in rows:
        cells = (
            row["mapping"],
            _shown_record_key(row["mapping"], row["record_key"]),
            row["reason"],
            escape_markdown(row["detail"])[:200],
            row["attempts"],
        )
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines += ["", "All open records: `zonesync status`, or the `sync_error` table in the intranet zone."]
    return lines


def _shown_record_key(mapping_name: str, record_key: str) -> str:
    mapping = all_mappings().get(mapping_name)
    return mapping.shown_record_key(record_key) if mapping else record_key


def summary_markdown(title: str, results: Sequence[MappingSyncResult], intranet: Engine | None) -> str:
    """The run summary: per-mapping counts, then a sample of the open quarantine with reasons."""
    lines = [f"# {title}", "", *results_markdown(results)]
    quarantined = [r.mapping for r in results if r.quarantined]
    if quarantined and intranet is not None:
        lines += quarantine_markdown(intranet, quarantined)
    return "\n".join(lines)


def escape_markdown(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return text.replace("|", "\\|").replace("\n", " ")


def publish_summary(flow_key: str, title: str, results: Sequence[MappingSyncResult], intranet: Engine | None) -> None:
    """Publish the Markdown summary and the per-mapping table of a run."""
    create_markdown_artifact(
        markdown=summary_markdown(title, results, intranet),
        key=f"{flow_key}-summary",
        description=title,
    )
    create_table_artifact(table=result_rows(results), key=f"{flow_key}-report", description=f"{title}: per mapping")
