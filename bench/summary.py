"""Medians per case and method, the ratios against the floor, the targets, and how they are shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.measure import MB, PHASES, Run, median

TARGET_RATIO = 1.0
TARGET_RSS_MB = 350


def _group(runs: Sequence[Run], case: str, method: str) -> list[Run]:
    return [run for run in runs if run.case == case and run.method == method and run.verified]


def _stats(runs: list[Run]) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "runs": len(runs),
        "rows": runs[0].rows if runs else 0,
        "median_seconds": round(median(r.seconds for r in runs), 4),
        "median_rows_per_second": round(median(r.rows_per_second for r in runs), 1),
        "min_rows_per_second": round(min((r.rows_per_second for r in runs), default=0.0), 1),
        "max_rows_per_second": round(max((r.rows_per_second for r in runs), default=0.0), 1),
        "median_cpu_seconds": round(median(r.cpu_seconds for r in runs), 3),
        "max_rss_peak_mb": round(max((r.rss_peak for r in runs), default=0) / MB, 1),
        "max_rss_growth_mb": round(max((r.rss_peak - r.rss_baseline for r in runs), default=0) / MB, 1),
    }
    if runs and "engine_seconds" in runs[0].detail:
        engine = median(r.detail["engine_seconds"] for r in runs)
        stats["median_engine_seconds"] = round(engine, 4)
        stats["median_engine_rows_per_second"] = round(stats["rows"] / engine, 1) if engine else 0.0
        phases = {p: median(r.detail["phase_seconds"][p] for r in runs) for p in PHASES}
        stats["median_phase_seconds"] = {p: round(value, 3) for p, value in phases.items()}
        stats["median_seconds_per_million_rows"] = round(stats["median_seconds"] / stats["rows"] * 1e6, 3)
    return stats


def summarise(runs: Sequence[Run], process_peak_rss: int) -> dict[str, Any]:
    """Per case/method medians, ratios against the floor and the target verdicts."""
    groups = {
        f"{case}/{method}": _stats(_group(runs, case, method))
        for case, method in dict.fromkeys((run.case, run.method) for run in runs)
    }

    def rate(key: str) -> float:
        return float(groups.get(key, {}).get("median_rows_per_second", 0.0))

    def seconds(key: str) -> float:
        return float(groups.get(key, {}).get("median_seconds", 0.0))

    full_ratio = rate("full/zonesync") / rate("full/floor-copy") if rate("full/floor-copy") else 0.0
    incremental_ratio = (
        rate("incremental/zonesync") / rate("incremental/floor-upsert") if rate("incremental/floor-upsert") else 0.0
    )
    zonesync_peak = max((run.rss_peak for run in runs if run.method == "zonesync"), default=0)
    rss_value = f"{process_peak_rss / MB:.0f} MB (VmRSS peak in zonesync runs {zonesync_peak / MB:.0f} MB)"
    incremental_value = f"{seconds('incremental/zonesync'):.3f}s vs {seconds('incremental/floor-upsert'):.3f}s"
    return {
        "groups": groups,
        "ratios": {
            "full_zonesync_vs_floor_copy": round(full_ratio, 3),
            "full_zonesync_vs_floor_upsert": round(rate("full/zonesync") / rate("full/floor-upsert"), 3)
            if rate("full/floor-upsert")
            else 0.0,
            "incremental_zonesync_vs_floor_upsert": round(incremental_ratio, 3),
            "scaling_zonesync_vs_floor_copy": round(rate("scaling/zonesync") / rate("scaling/floor-copy"), 3)
            if rate("scaling/floor-copy")
            else 0.0,
        },
        "targets": {
            "full_sync_at_least_floor": {
                "value": round(full_ratio, 3),
                "target": f">= {TARGET_RATIO} x floor-copy rows/s",
                "met": full_ratio >= TARGET_RATIO,
            },
            "incremental_no_slower_than_floor": {
                "value": incremental_value,
                "target": "zonesync seconds <= floor-upsert seconds",
                "met": 0 < seconds("incremental/zonesync") <= seconds("incremental/floor-upsert"),
            },
            "peak_rss": {
                "value": rss_value,
                "target": f"<= {TARGET_RSS_MB} MB (process ru_maxrss)",
                "met": process_peak_rss / MB <= TARGET_RSS_MB,
            },
        },
        "process_peak_rss_mb": round(process_peak_rss / MB, 1),
        "failed_runs": [run.as_json() for run in runs if not run.verified],
    }


def _rate(value: float) -> str:
    return f"{value / 1000:,.1f}k"


def show(console: Console, summary: dict[str, Any]) -> None:
    """Print the summary tables."""
    throughput = Table(title="Throughput (medians of verified runs)")
    for header in ("case / method", "rows", "runs", "median s", "rows/s", "min-max rows/s", "s per 1M rows",
                   "CPU s (this process)", "RSS peak MB", "RSS growth MB"):  # fmt: skip
        throughput.add_column(header, justify="left" if header == "case / method" else "right")
    for key, stats in summary["groups"].items():
        throughput.add_row(
            key, f"{stats['rows']:,}", str(stats["runs"]), f"{stats['median_seconds']:.2f}",
            _rate(stats["median_rows_per_second"]),
            f"{_rate(stats['min_rows_per_second'])}-{_rate(stats['max_rows_per_second'])}",
            f"{stats['median_seconds'] / stats['rows'] * 1e6:.2f}" if stats["rows"] else "-",
            f"{stats['median_cpu_seconds']:.2f}", f"{stats['max_rss_peak_mb']:.0f}",
            f"{stats['max_rss_growth_mb']:.0f}",
        )  # fmt: skip
    console.print(throughput)

    phases = Table(title="zonesync: flow wall time vs engine time, and the engine's phases (medians, seconds)")
    for header in ("case", "flow wall", "engine", "engine rows/s", *PHASES, "phase sum"):
        phases.add_column(header, justify="left" if header == "case" else "right")
    for key, stats in summary["groups"].items():
        if "median_phase_seconds" not in stats:
            continue
        split = stats["median_phase_seconds"]
        phases.add_row(
            key.split("/")[0], f"{stats['median_seconds']:.2f}", f"{stats['median_engine_seconds']:.2f}",
            _rate(stats["median_engine_rows_per_second"]), *(f"{split[p]:.2f}" for p in PHASES),
            f"{sum(split.values()):.2f}",
        )  # fmt: skip
    console.print(phases)
    console.print(
        "[dim]Phases overlap (read-ahead and flagging run in threads): they can sum to more than the engine time.[/]"
    )

    ratios = Table(title="Ratios (zonesync throughput ÷ floor throughput, medians)")
    ratios.add_column("comparison")
    ratios.add_column("ratio", justify="right")
    for name, value in summary["ratios"].items():
        ratios.add_row(name, f"{value:.3f}")
    console.print(ratios)

    targets = Table(title="Targets")
    for header in ("target", "measured", "wanted", "met"):
        targets.add_column(header)
    for name, verdict in summary["targets"].items():
        met = "[green]yes[/]" if verdict["met"] else "[red]no[/]"
        targets.add_row(name, str(verdict["value"]), verdict["target"], met)
    console.print(targets)
    if summary["failed_runs"]:
        console.print(f"[bold red]{len(summary['failed_runs'])} run(s) failed verification and are excluded.[/]")
