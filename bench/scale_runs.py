"""One measured scale-out run: reset (untimed), W workers started and warmed up (untimed), go, wait for the last
worker's report, verify. The wall time runs from "go" to the last report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import scale_data
from bench.database import DatabasePair
from bench.scale_config import ScaleConfig
from bench.scale_pool import Gang, Worker, spawn, worker_args, worker_environment
from zonesync.schemas.mapping import SyncMapping

KIB = 1024
BACKGROUND_SAMPLE_SECONDS = 1.0


@dataclass
class ScaleBench:
    """Everything a run needs: the databases, the options, the Prefect API, where the workers' logs go."""

    pair: DatabasePair
    config: ScaleConfig
    mapping: SyncMapping
    api_url: str
    logs: Path
    console: Console
    default_batch_size: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    def environment(self, lease_seconds: float | None = None) -> dict[str, str]:
        """The workers' environment (the benchmark's lease time unless told)."""
        seconds = lease_seconds if lease_seconds is not None else self.config.lease_seconds
        return worker_environment(self.pair, self.api_url, self.config.partitions, seconds)


def cpu_ticks() -> tuple[int, int]:
    """The machine's CPU time so far, all cores (busy, total), in clock ticks (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU capacity (all cores) in use between two `cpu_ticks` readings."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total else 0.0


def cpu_split(record: dict[str, Any], busy: float, background: float) -> dict[str, float]:
    """Where the run's CPU went, in core-seconds: the workers' own processes, and the rest of the machine (the
    databases and the Prefect server) less what it did before go (another job on the machine)."""
    cores, seconds = os.cpu_count() or 1, record["seconds"]
    workers = sum(float(report.get("cpu_seconds", 0.0)) for report in record["workers_reports"])
    return {"workers_cpu_seconds": round(workers, 1),
            "others_cpu_seconds": round((busy - background) * cores * seconds - workers, 1)}  # fmt: skip


def job_of(worker: Worker) -> int | None:
    """The id of the worker's measured batch_job row (its last `job` line: the first one is the warm-up's)."""
    jobs = worker.said_all("job")
    return int(jobs[-1]["id"]) if len(jobs) > 1 else None


def job_started_at(worker: Worker) -> float | None:
    """When the worker's measured flow run had opened its batch_job row (its clock, time.time())."""
    jobs = worker.said_all("job")
    return float(jobs[-1]["at"]) if len(jobs) > 1 else None


def measure(bench: ScaleBench, regime: str, workers: int, repetition: int) -> dict[str, Any]:
    """Reset, start `workers` workers, time them from go to the last report, verify; the run's record."""
    config = bench.config
    batch_size = config.batch_size(regime, bench.default_batch_size)
    scale_data.reset(bench.pair, bench.mapping)
    args = worker_args(bench.mapping.name, batch_size, config.delay(regime))
    env = bench.environment()
    gang = Gang([spawn(f"{regime}-w{workers}-r{repetition}-{i + 1}", args, env, bench.logs) for i in range(workers)])
    try:
        gang.wait_ready()
        before = scale_data.last_job_id(bench.pair)  # the warm-up calls' rows are before it
        quiet = cpu_ticks()
        time.sleep(BACKGROUND_SAMPLE_SECONDS)  # the workers wait for go: what the machine does without them
        load, ticks, opened = os.getloadavg()[0], cpu_ticks(), scale_data.sessions(bench.pair)
        background = busy_share(quiet, ticks)
        started = gang.go()
        ended, reports = gang.wait_done()
        busy = busy_share(ticks, cpu_ticks())
    finally:
        gang.stop()
    opened = scale_data.sessions(bench.pair) - opened - 1  # less this count's own connection
    for worker, report in zip(gang.workers, reports, strict=True):
        report["job_id"], report["job_started_at"] = job_of(worker), job_started_at(worker)
    jobs = scale_data.jobs_after(bench.pair, before)
    check = scale_data.verify_run(bench.pair, bench.mapping, config.rows, reports, jobs)
    record = _record(regime, workers, repetition, batch_size, ended - started, reports, check, load)
    record |= {"machine_cpu_busy": busy, "background_cpu_busy": background, "ready": gang.ready,
               "connections_opened": opened} | cpu_split(record, busy, background)  # fmt: skip
    bench.runs.append(record)
    _print(bench.console, record)
    return record


def _record(regime: str, workers: int, repetition: int, batch_size: int, seconds: float,
            reports: list[dict[str, Any]], check: scale_data.RunCheck, load: float) -> dict[str, Any]:  # fmt: skip
    rows = check.figures["ledger_rows_synced"]
    batches = sum(int(report.get("batches", 0)) for report in reports)
    retries: dict[str, int] = {}
    for report in reports:
        for kind, count in report.get("retries", {}).items():
            retries[kind] = retries.get(kind, 0) + count
    lags = [report["job_started_at"] - report["started_at"] for report in reports if report.get("job_started_at")]
    return {
        "regime": regime, "workers": workers, "repetition": repetition, "batch_size": batch_size,
        "rows": rows, "seconds": round(seconds, 4), "rows_per_second": round(rows / seconds, 1) if seconds else 0.0,
        "batches": batches, "retries": retries,
        "retries_per_batch": round(sum(retries.values()) / batches, 4) if batches else 0.0,
        "peak_rss_mb": [round(report["peak_rss_kib"] / KIB, 1) for report in reports],
        "flow_start_lag_seconds": round(max(lags, default=0.0), 3),
        "load_average_1m": round(load, 2), "verified": not check.problems, "problems": check.problems,
        "verification": check.figures, "workers_reports": reports,
    }  # fmt: skip


def latency_share(record: dict[str, Any]) -> dict[str, float]:
    """For a run of one worker: the share of its wall time covered by the added sleeps (at least one thread asleep),
    and the sleeps summed over its threads (above 1: the pipeline's threads slept at the same time)."""
    report = record["workers_reports"][0]
    delay = report.get("delay", {})
    seconds = record["seconds"] or 1.0
    return {"covered": delay.get("covered_seconds", 0.0) / seconds, "summed": delay.get("slept_seconds", 0.0) / seconds}


def _print(console: Console, record: dict[str, Any]) -> None:
    verdict = "[green]ok[/]" if record["verified"] else f"[bold red]FAILED {record['problems']}[/]"
    retries = sum(record["retries"].values())
    console.print(
        f"{record['regime']:<8} W={record['workers']} #{record['repetition']} {record['rows']:>9,} rows "
        f"{record['seconds']:7.2f}s {record['rows_per_second'] / 1000:7.1f}k rows/s  batches {record['batches']:>5} "
        f"retries {retries}  peak RSS {max(record['peak_rss_mb'], default=0):.0f} MB  "
        f"flow start lag {record['flow_start_lag_seconds']:.1f}s  "
        f"CPU busy {record['machine_cpu_busy']:.0%} (before go {record['background_cpu_busy']:.0%}; core-s: "
        f"workers {record['workers_cpu_seconds']:.0f}, databases + Prefect {record['others_cpu_seconds']:.0f})  "
        f"connections {record['connections_opened']}  load {record['load_average_1m']:.1f}  {verdict}",
        highlight=False,
    )
    if record["workers"] == 1 and record["regime"] == "latency":
        share = latency_share(record)
        console.print(
            f"         the added sleeps cover {share['covered']:.0%} of the wall time (summed over threads "
            f"{share['summed']:.0%})",
            highlight=False,
        )
