"""The real `retry_sync` Prefect flow under the session's test harness, on each backend.

Checks what a user sees: the target rows and source flags, `sync_error` with reasons, the `batch_job` row,
the artifacts (summary, per-mapping table, progress), and that no password leaks anywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from tests.artifact_layout import clipped_tables
from tests.conftest import ZonePair
from tests.integration.helpers import (
    create,
    errors,
    errors_by_key,
    flag_value,
    flow_run_artifacts,
    jobs,
    normalize,
    rows,
    seed,
    target_rows,
)
from tests.integration.tables import broken_tables, loose_merchant_source
from zonesync.flows.retry_sync import SyncReport, retry_sync
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.setup import demo_data

pytestmark = pytest.mark.usefixtures("prefect_harness")

DEMO_MODULES = "zonesync.schemas.examples"
# Demo merchants that must be quarantined, and why (13, 42 and 77 are the demo data's own invalid rows).
EXPECTED_REASONS = {
    13: "validation",  # empty name
    42: "validation",  # status 'X'
    77: "validation",  # negative fee
    30: "duplicate_key",  # two source rows with merchant_id 30 in one batch
    31: "type_loss",  # fee 12.3456 does not fit numeric(18,2)
}
REFUSED = {33: "constraint"}  # email taken by merchant 32: the target's unique index refuses it


def _run(**parameters: Any) -> tuple[SyncReport, str]:
    """Run the flow; return its report and its flow run id."""
    state = retry_sync(**parameters, return_state=True)
    report = state.result()
    assert isinstance(report, SyncReport)
    return report, str(state.state_details.flow_run_id)


def _demo_merchants(*, refused: bool = False) -> pl.DataFrame:
    """The demo merchants (80) in the loosened source table, plus rows the engine refuses (and, with
    `refused`, a row the target's unique email index refuses)."""
    frame = demo_data.merchants(80).with_columns(
        pl.col("merchant_id").cast(pl.Int32).alias("row_id"), pl.col("fee").cast(pl.Decimal(20, 4))
    )
    duplicate = frame.filter(pl.col("merchant_id") == 30).with_columns(
        pl.lit(1000, dtype=pl.Int32).alias("row_id"), pl.lit("Duplicate Thirty").alias("merchant_name")
    )
    frame = pl.concat([frame, duplicate])
    return frame.with_columns(
        pl.when(pl.col("merchant_id") == 31).then(pl.lit(Decimal("12.3456"))).otherwise(pl.col("fee")).alias("fee"),
        pl.when((pl.col("merchant_id") == 33) & refused)
        .then(pl.lit("merchant32@example.com"))
        .otherwise(pl.col("email"))
        .alias("email"),
    )


def _create_demo_target(engine: sa.Engine) -> None:
    metadata = internet_tables()
    merchant = metadata.tables["merchant"]
    merchant.append_column(sa.Column("tax_id", sa.String(20)))  # not mapped: must stay NULL
    sa.Index("ux_merchant_email", merchant.c.email, unique=True)
    metadata.create_all(engine, tables=[merchant])


def _no_secret(pair: ZonePair, *texts: Any) -> None:
    for password in pair.passwords:
        for text in texts:
            assert password not in str(text), "a password leaked"


def test_retry_sync_demo_merchants(zones: ZonePair, use_zones: Callable[..., None]) -> None:
    """Demo merchants with invalid rows: valid ones land exactly and are flagged; the others are quarantined
    with their reasons (validation, duplicate_key, type_loss); batch_job and the artifacts tell the same story."""
    _check_demo_run(zones, use_zones, refused=False)


def test_retry_sync_quarantines_rows_the_target_refuses(zones: ZonePair, use_zones: Callable[..., None]) -> None:
    """As above, plus a merchant whose email the target's unique index refuses: quarantined as 'constraint',
    its batch and merchant 32 (the email's owner) unharmed."""
    _check_demo_run(zones, use_zones, refused=True)


def _check_demo_run(zones: ZonePair, use_zones: Callable[..., None], *, refused: bool) -> None:
    expected_reasons = {**EXPECTED_REASONS, **(REFUSED if refused else {})}
    create(zones.intranet, loose_merchant_source())
    _create_demo_target(zones.internet)
    source = _demo_merchants(refused=refused)
    seed(zones.intranet, "merchant", source, ("row_id",))
    use_zones(zones, modules=DEMO_MODULES)

    report, flow_run_id = _run(batch_size=25)

    result = report["merchants"]
    bad_rows = source.filter(pl.col("merchant_id").is_in(list(expected_reasons))).height
    assert report.ok and [r.mapping for r in report.mappings] == ["merchants"], result.message
    assert (result.status, result.message) == ("partial", "")
    assert result.read == source.height

    # Target: exactly the valid merchants, equal to their mapped source values; flags match.
    sources = rows(zones.intranet, "merchant")
    targets = target_rows(zones.internet, MERCHANTS)
    good = {row["merchant_id"] for row in sources} - set(expected_reasons)
    for row in sources:
        synced = row["merchant_id"] in good
        assert flag_value(row["is_sync"]) == synced, row["merchant_id"]
        if synced:
            expected = {c.name: normalize(row[c.source], c.dtype) for c in MERCHANTS.columns}
            assert targets[(row["merchant_id"],)] == expected, f"{row['merchant_id']} is flagged, its target differs"
    assert set(targets) == {(merchant_id,) for merchant_id in good}
    assert {row["tax_id"] for row in rows(zones.internet, "merchant")} == {None}, "the unmapped tax_id left the zone"

    # Quarantine: one open record per bad key with its reason.
    quarantine = errors_by_key(zones.intranet, MERCHANTS, open_only=True)
    assert {key[0]: row["reason"] for key, row in quarantine.items()} == expected_reasons
    assert all(row["attempts"] == 1 and row["direction"] == "intranet_to_internet" for row in quarantine.values())
    if refused:
        assert "email" in quarantine[(33,)]["detail"]
    assert result.upserted == result.flagged == source.height - bad_rows
    assert result.quarantined == len(expected_reasons)

    # batch_job: one finished row for this flow run.
    [job] = jobs(zones.intranet)
    assert (job["job_name"], job["status"], job["flow_run_id"]) == ("retry-sync", "PARTIAL", flow_run_id)
    assert (job["rows_eligible"], job["rows_synced"], job["rows_failed"]) == (
        result.read,
        result.flagged,
        result.quarantined,
    )
    assert job["finished_at"] is not None and job["finished_at"] >= job["started_at"]

    # Artifacts, read back from the Prefect server.
    artifacts = flow_run_artifacts(flow_run_id)
    assert {"retry-sync-summary", "retry-sync-report", "retry-sync-progress-merchants"} <= set(artifacts)
    table = json.loads(artifacts["retry-sync-report"].data)
    assert [(r["mapping"], r["status"], r["read"], r["upserted"], r["flagged"], r["quarantined"]) for r in table] == [
        ("merchants", "partial", result.read, result.upserted, result.flagged, result.quarantined)
    ]
    summary = artifacts["retry-sync-summary"].data
    assert artifacts["retry-sync-summary"].type == "markdown"
    assert summary.startswith(f"# Retry sync: PARTIAL\n\nbatch_job #{job['id']}\n")  # the run's verdict first
    assert f"- **merchants** — partial: {result.read:,} read, {result.upserted:,} upserted" in summary
    assert not clipped_tables(summary), summary  # every column shown in Prefect's UI
    for merchant_id, reason in expected_reasons.items():
        assert f'{{"merchant_id":{merchant_id}}}' in summary and reason in summary
    assert artifacts["retry-sync-progress-merchants"].type == "progress"
    assert float(artifacts["retry-sync-progress-merchants"].data) == 100.0
    progress = artifacts["retry-sync-progress-merchants"].description or ""
    assert (
        progress.startswith(f"merchants: {result.read:,} of {result.read:,} rows read (100.0 %), ")
        and "rows/s" in progress
    )
    _no_secret(zones, summary, table, job["message"], result.message)


def test_retry_sync_empty_backlog(zones: ZonePair, use_zones: Callable[..., None]) -> None:
    """Nothing unsynced: status no_record and nothing written but the batch_job row."""
    intranet_tables().create_all(zones.intranet)
    internet_tables().create_all(zones.internet)
    seed(zones.intranet, "merchant", demo_data.merchants(10).with_columns(is_sync=pl.lit(True)), ("merchant_id",))
    source_before = rows(zones.intranet, "merchant")
    use_zones(zones, modules=DEMO_MODULES)

    report, flow_run_id = _run()

    result = report["merchants"]
    assert report.ok
    assert (result.status, result.read, result.upserted, result.flagged, result.quarantined) == (
        "no_record",
        0,
        0,
        0,
        0,
    )
    assert rows(zones.intranet, "merchant") == source_before
    assert rows(zones.internet, "merchant") == []
    assert errors(zones.intranet) == []
    [job] = jobs(zones.intranet)
    assert (job["status"], job["rows_eligible"], job["rows_synced"], job["rows_failed"]) == ("NO_RECORD", 0, 0, 0)
    assert job["flow_run_id"] == flow_run_id and job["finished_at"] is not None


def test_progress_is_logged_at_most_once_a_second_not_for_every_batch(
    zones: ZonePair, use_zones: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    """A log line per batch is a record the Prefect server stores for every few hundred rows: the progress goes
    to the log as often as to its artifact, at most once a second, and once more at the end."""
    intranet_tables().create_all(zones.intranet)
    internet_tables().create_all(zones.internet)
    seed(zones.intranet, "merchant", demo_data.merchants(12), ("merchant_id",))
    use_zones(zones, modules=DEMO_MODULES)

    with caplog.at_level(logging.INFO, logger="prefect"):
        result = retry_sync(mappings=["merchants"], batch_size=1)["merchants"]

    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("batch ")]
    assert result.batches >= 12 and 1 <= len(lines) < result.batches / 2, lines
    assert lines[-1].startswith(f"batch {result.batches}: merchants: {result.read:,} of ")


def test_retry_sync_mapping_errors_do_not_stop_other_mappings(zones: ZonePair, use_zones: Callable[..., None]) -> None:
    """A missing target table and a missing target column end those mappings with a clear error naming the
    table/column; the mapping between them still syncs; no password appears in any message or artifact."""
    intranet_tables().create_all(zones.intranet)
    internet_tables().create_all(zones.internet)
    broken_source, broken_target = broken_tables()
    broken_source.create_all(zones.intranet)
    broken_target.create_all(zones.internet)
    seed(zones.intranet, "merchant", demo_data.merchants(20), ("merchant_id",))
    things = pl.DataFrame({"thing_id": [1, 2], "label": ["one", "two"], "is_sync": [False, False]})
    seed(zones.intranet, "zs_ghost_src", things, ("thing_id",))
    seed(zones.intranet, "zs_lacking_src", things, ("thing_id",))
    use_zones(zones, batch_size=7)  # ZONESYNC_BATCH_SIZE applies when the flow gets no batch_size

    report, flow_run_id = _run(mappings=["ghost", "merchants", "lacking"])

    ghost, merchants, lacking = report["ghost"], report["merchants"], report["lacking"]
    assert not report.ok
    assert ghost.status == "error" and "'zs_ghost'" in ghost.message and "not found" in ghost.message
    assert lacking.status == "error" and "'zs_lacking'" in lacking.message and "'label'" in lacking.message
    assert (merchants.status, merchants.upserted, merchants.flagged, merchants.batches) == ("partial", 19, 19, 3)
    assert len(rows(zones.internet, "merchant")) == 19
    for table in ("zs_ghost_src", "zs_lacking_src"):
        assert not any(flag_value(row["is_sync"]) for row in rows(zones.intranet, table))
    [job] = jobs(zones.intranet)
    assert job["status"] == "PARTIAL"
    assert "zs_ghost" in job["message"] and "label" in job["message"]
    artifacts = flow_run_artifacts(flow_run_id)
    summary = artifacts["retry-sync-summary"].data
    assert "- **ghost** — error: " in summary and "- **lacking** — error: " in summary
    _no_secret(zones, ghost.message, lacking.message, job["message"], summary, artifacts["retry-sync-report"].data)
