"""The end-day benchmark's timed runs: the floor, `reconcile_mapping` alone, `zonesync end-day` as a worker runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from typing import Any

from psycopg import sql

from bench.database import DatabasePair
from bench.end_day_data import COLUMNS, DAY, TIMEZONE
from bench.floor import FloorTiming
from bench.measure import MB
from bench.retry_sync import ROOT


# -- the floor -------------------------------------------------------------------------------------
def floor_end_day(pair: DatabasePair) -> FloorTiming:
    """The eligible rows by COPY TO STDOUT streamed into COPY FROM STDIN (binary), then one flag UPDATE."""
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    pending = sql.SQL("is_sync IS NOT TRUE AND status = 'S'")  # the product's predicate (and the index's)
    started = time.perf_counter()
    with pair.connect(pair.source_db) as source, pair.connect(pair.target_db) as target:
        with source.cursor() as reader, target.cursor() as writer:
            copy_out = sql.SQL("COPY (SELECT {} FROM payment WHERE {}) TO STDOUT (FORMAT BINARY)")
            copy_in = sql.SQL("COPY payment ({}) FROM STDIN (FORMAT BINARY)").format(columns)
            with reader.copy(copy_out.format(columns, pending)) as out, writer.copy(copy_in) as load:
                for block in out:
                    load.write(block)
            rows = writer.rowcount
        target.commit()
        source.commit()
        transferred = time.perf_counter()
        flagged = source.execute(sql.SQL("UPDATE payment SET is_sync = true WHERE ") + pending).rowcount
        source.commit()
    finished = time.perf_counter()
    return FloorTiming(rows, flagged, finished - started, transferred - started, finished - transferred)


def reconcile_alone(pair: DatabasePair) -> tuple[float, bool]:
    """`reconcile_mapping` called directly in this process (no Prefect): seconds and whether the zones agree."""
    from zonesync.schemas.examples import PAYMENTS
    from zonesync.tasks.reconcile.compare import reconcile_mapping
    from zonesync.tasks.zones.engines import create_engine

    internet, intranet = create_engine(pair.url(pair.source_db)), create_engine(pair.url(pair.target_db))
    try:
        started = time.perf_counter()
        found = reconcile_mapping(PAYMENTS, DAY, internet, intranet, timezone=TIMEZONE)
        return time.perf_counter() - started, found.ok
    finally:
        internet.dispose()
        intranet.dispose()


# -- the flow, as a worker runs it -----------------------------------------------------------------
def run_end_day(pair: DatabasePair, day: date = DAY) -> dict[str, Any]:
    """`zonesync end-day --date D` in its own process; wall time, peak RSS, CPU, exit code and the split."""
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = [sys.executable, "-m", "zonesync.flows.cli", "end-day", "--date", day.isoformat()]
    with tempfile.TemporaryFile() as output:
        load, began = os.getloadavg()[0], time.time()
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds, ended = time.perf_counter() - started, time.time()
        output.seek(0)
        printed = output.read().decode(errors="replace")
    facts: dict[str, Any] = {
        "seconds": round(seconds, 3), "exit_code": os.waitstatus_to_exitcode(status), "load_average_1m": load,
        "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
    }  # fmt: skip
    if facts["exit_code"] != 0:
        facts["output_tail"] = printed[-2000:]
    facts |= split(pair, day)
    start, end = facts.pop("flow_run_start", None), facts.pop("flow_run_end", None)
    if start and end:  # the process's own time around the flow run (one clock: same machine)
        facts["before_flow_seconds"], facts["after_flow_seconds"] = round(start - began, 3), round(ended - end, 3)
    return facts


def split(pair: DatabasePair, day: date) -> dict[str, Any]:
    """Where the run's time went: its batch_job row, its flow and task runs, its end-day-report artifact."""
    with pair.connect(pair.target_db) as conn:
        job = conn.execute(
            "SELECT id, status, rows_eligible, rows_synced, rows_failed, flow_run_id, "
            "extract(epoch FROM finished_at - started_at) FROM batch_job WHERE business_date = %s "
            "ORDER BY id DESC LIMIT 1", (day,),
        ).fetchone()  # fmt: skip
    if job is None:
        return {"batch_job": None}
    counts = dict(zip(("id", "status", "eligible", "synced", "failed"), job[:5], strict=True))
    facts: dict[str, Any] = {"batch_job": counts, "ledger_seconds": round(float(job[6] or 0), 3)}
    facts |= _prefect_split(job[5]) if job[5] else {}
    return facts


def _prefect_split(flow_run_id: str) -> dict[str, Any]:
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas import filters as f

    def span(run: Any) -> float | None:
        return (run.end_time - run.start_time).total_seconds() if run.start_time and run.end_time else None

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
        deadline = time.monotonic() + 30  # task run states reach the server as events, a moment later
        while True:
            tasks = client.read_task_runs(flow_run_filter=f.FlowRunFilter(id=f.FlowRunFilterId(any_=[flow_run.id])))
            if (len(tasks) >= 2 and all(t.end_time for t in tasks)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        key, run = f.ArtifactFilterKey(any_=["end-day-report"]), f.ArtifactFilterFlowRunId(any_=[flow_run.id])
        artifacts = client.read_artifacts(artifact_filter=f.ArtifactFilter(key=key, flow_run_id=run))
    by_task = {t.name.rsplit("-", 1)[0]: span(t) for t in tasks}  # "sync-mapping-3f2" -> "sync-mapping"
    report = json.loads(str(artifacts[0].data))[0] if artifacts else {}
    return {
        "flow_run_seconds": span(flow_run),
        "flow_run_start": flow_run.start_time.timestamp() if flow_run.start_time else None,
        "flow_run_end": flow_run.end_time.timestamp() if flow_run.end_time else None,
        "sync_task_seconds": by_task.get("sync-mapping"),
        "reconcile_task_seconds": by_task.get("reconcile-mapping"),
        "engine_seconds": report.get("seconds"),
        "sync_status": report.get("status"),
    }
