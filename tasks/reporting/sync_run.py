"""Prefect artifacts and log lines that report a sync run: a summary, a table, and live progress."""

from __future__ import annotations

import re
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
from zonesync.tasks.bookkeeping.quarantine import open_errors
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.sync.slices import Slice

RESULT_COLUMNS = ("read", "upserted", "flagged", "quarantined", "changed_in_flight", "deletes_applied",
                  "deletes_skipped", "deletes_refused")  # fmt: skip


class BatchProgress:
    """Keeps a progress artifact and the run's log current while a mapping syncs: the percentage, and in the
    artifact's description and a log line the rows read of those pending at the start and the rate so far.

    Both at most once per `interval` seconds: an artifact update is a synchronous API call on the engine's main
    thread, a log line a record the Prefect server stores, and batches can be a fraction of a second apart (a log
    line per 1,000-row batch was a tenth of a worker's own time in the scale-out benchmark).
    """

    def __init__(self, mapping: SyncMapping, flow_key: str, slice_: Slice | None = None, interval: float = 1.0) -> None:
        self.mapping = mapping
        self.flow_key = flow_key
        self.slice = slice_  # each slice of a mapping keeps its own artifact
        self.interval = interval
        self.artifact_id: Any = None
        self.published_at = 0.0
        self.started = time.monotonic()
        self.logger = get_run_logger()

    def __call__(self, result: MappingSyncResult) -> None:
        """Called after every batch with the counts so far."""
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
        description = progress_line(self.mapping.name, result, time.monotonic() - self.started)
        key = f"{self.flow_key}-progress-{self.mapping.artifact_slug}"
        if self.slice is not None:
            key, description = f"{key}-slice-{self.slice.index + 1}", f"{self.slice.label}: {description}"
        self.logger.info("batch %s: %s", result.batches, description)
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(progress=percent, key=key, description=description)
        else:
            update_progress_artifact(self.artifact_id, progress=percent, description=description)


def progress_line(mapping: str, result: MappingSyncResult, seconds: float) -> str:
    """'merchants: 40,000 of 1,000,000 rows read (4.0 %), 38,000 upserted, 12 quarantined; 21,500 rows/s'."""
    total = max(result.pending_at_start, result.read)
    percent = 100.0 * result.read / total if total else 100.0
    rate = f"; {result.read / seconds:,.0f} rows/s" if seconds > 0 else ""
    return (
        f"{mapping}: {result.read:,} of {total:,} rows read ({percent:.1f} %), {result.upserted:,} upserted, "
        f"{result.quarantined:,} quarantined{rate}"
    )


def result_rows(results: Sequence[MappingSyncResult]) -> list[dict[str, Any]]:
    """One JSON-ready row per mapping for table artifacts."""
    return [
        {"mapping": r.mapping, "status": r.status, **{c: getattr(r, c) for c in RESULT_COLUMNS},
         "seconds": round(r.seconds, 3), "message": r.message}
        for r in results
    ]  # fmt: skip


def results_markdown(results: Sequence[MappingSyncResult]) -> list[str]:
    """Per-mapping counts, one line each, then each mapping's message.

    Lines, not a table: Prefect's UI never wraps a Markdown table cell, and clips what does not fit its column
    (about 720 px at a 1280 px window); a long mapping name next to counts in millions did not fit. The
    `<flow>-report` table artifact holds the same counts as a table (it scrolls).
    """
    lines = [f"- {counts_line(r)}" for r in results]
    for r in results:
        if r.message:
            lines += ["", f"**{escape_inline(r.mapping)}**: {escape_inline(r.message)}"]
    return lines


def counts_line(r: MappingSyncResult) -> str:
    """'**merchants** — partial: 500 read, 497 upserted, 497 flagged, 3 quarantined, 0 changed in flight (0.40 s)'."""
    deletes = f", deletes: {r.deletes_line()}" if r.deletes else ""
    return (
        f"**{escape_inline(r.mapping)}** — {r.status}: {r.read:,} read, {r.upserted:,} upserted, "
        f"{r.flagged:,} flagged, {r.quarantined:,} quarantined, {r.changed_in_flight:,} changed in flight{deletes} "
        f"({r.seconds:,.2f} s)"
    )


def quarantine_markdown(intranet: Engine, mappings: Sequence[str], limit: int = 20) -> list[str]:
    """A sample of the open quarantine of some mappings, with reasons (nothing when it is empty): a list, not a
    table, for its details are sentences."""
    try:
        rows = open_errors(intranet, mappings, limit=limit)
    except SQLAlchemyError:  # the intranet zone is down: the summary still reports what the run knows
        return ["", "(quarantine unknown: the intranet zone could not be read)"]
    if not rows:
        return []
    lines = ["", "## Quarantined records (sample)", ""]
    for row in rows:
        key = _shown_record_key(row["mapping"], row["record_key"]).replace("`", "'")
        attempts = f"{row['attempts']} attempt" + ("s" if row["attempts"] != 1 else "")
        lines.append(
            f"- **{escape_inline(row['mapping'])}** `{key}` — {row['reason']}: {escape_inline(row['detail'][:200])} "
            f"({attempts})"
        )
    lines += ["", "All open records: `zonesync status`, or the `sync_error` table in the intranet zone."]
    return lines


def _shown_record_key(mapping_name: str, record_key: str) -> str:
    mapping = all_mappings().get(mapping_name)
    return mapping.shown_record_key(record_key) if mapping else record_key


def summary_markdown(
    title: str,
    results: Sequence[MappingSyncResult],
    intranet: Engine | None,
    status: str = "",
    job_id: int | None = None,
) -> str:
    """The run summary: its status and batch_job row, per-mapping counts, a sample of the open quarantine."""
    lines = [f"# {title}: {status}" if status else f"# {title}", ""]
    if job_id is not None:
        lines += [f"batch_job #{job_id}", ""]
    lines += results_markdown(results)
    quarantined = [r.mapping for r in results if r.quarantined or r.deletes_refused]
    if quarantined and intranet is not None:
        lines += quarantine_markdown(intranet, quarantined)
    return "\n".join(lines)


def escape_inline(text: str) -> str:
    """Text shown as it is in a line of Markdown (no emphasis, link, code or HTML made of its characters)."""
    return re.sub(r"([\\`*_\[\]<>|#~])", r"\\\1", text.replace("\n", " "))


def publish_summary(
    flow_key: str,
    title: str,
    results: Sequence[MappingSyncResult],
    intranet: Engine | None,
    *,
    status: str = "",
    job_id: int | None = None,
) -> None:
    """Publish the Markdown summary (with the run's status and batch_job id) and the per-mapping table of a run."""
    create_markdown_artifact(
        markdown=summary_markdown(title, results, intranet, status, job_id),
        key=f"{flow_key}-summary",
        description=title,
    )
    create_table_artifact(table=result_rows(results), key=f"{flow_key}-report", description=f"{title}: per mapping")
