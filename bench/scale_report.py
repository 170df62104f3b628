"""The scale-out summary: medians per regime and worker count, speedup, efficiency, the targets (reported, never
asserted), and the tables printed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.measure import median

# From the issue: the efficiency E(W) = S(W) / W wanted in the latency-bound regime.
LATENCY_TARGETS = {2: 0.85, 4: 0.75, 8: 0.60}


def _row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rss = [mb for run in runs for mb in run["peak_rss_mb"]]
    batches = sum(run["batches"] for run in runs)
    retries = sum(sum(run["retries"].values()) for run in runs)
    return {
        "runs": len(runs), "median_seconds": round(median(run["seconds"] for run in runs), 3),
        "median_rows_per_second": round(median(run["rows_per_second"] for run in runs), 1),
        "min_rows_per_second": round(min(run["rows_per_second"] for run in runs), 1),
        "max_rows_per_second": round(max(run["rows_per_second"] for run in runs), 1),
        "peak_rss_mb_min": min(rss, default=0.0), "peak_rss_mb_max": max(rss, default=0.0),
        "batches": batches, "retries": retries, "retries_per_batch": round(retries / batches, 4) if batches else 0.0,
        "median_load_average_1m": round(median(run["load_average_1m"] for run in runs), 2),
    }  # fmt: skip


def _target(regime: str, workers: int, efficiency: float, rate: float, previous: float | None) -> dict[str, Any]:
    if regime == "latency" and workers in LATENCY_TARGETS:
        wanted = LATENCY_TARGETS[workers]
        return {"wanted": f"E >= {wanted:.2f}", "met": efficiency >= wanted}
    if regime == "cpu" and previous is not None:
        return {"wanted": "rows/s >= the previous W's", "met": rate >= previous}
    return {"wanted": "-", "met": None}


def summarise_regime(regime: str, runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per worker count (verified runs only): medians, S(W) and E(W) against the smallest W measured."""
    counts = sorted({run["workers"] for run in runs if run["regime"] == regime})
    rows: list[dict[str, Any]] = []
    base: tuple[int, float] | None = None
    previous: float | None = None
    for workers in counts:
        verified = [run for run in runs if run["regime"] == regime and run["workers"] == workers and run["verified"]]
        if not verified:
            rows.append({"workers": workers, "runs": 0})
            continue
        row = {"workers": workers, **_row(verified)}
        rate = row["median_rows_per_second"]
        base = base or (workers, rate)
        speedup = rate / base[1] * base[0]  # as if the smallest W had scaled perfectly from one worker
        row |= {"speedup": round(speedup, 3), "efficiency": round(speedup / workers, 3)}
        row["target"] = _target(regime, workers, row["efficiency"], rate, previous)
        previous = rate
        rows.append(row)
    return rows


def _mark(met: bool | None) -> str:
    return "" if met is None else (" [green]yes[/]" if met else " [red]no[/]")


def show_regime(console: Console, regime: str, rows: list[dict[str, Any]], title: str) -> None:
    """The table of one regime."""
    table = Table(title=title)
    for header in ("W", "rows/s", "min-max rows/s", "wall s", "speedup S(W)", "E(W)", "target", "peak RSS per worker",
                   "retries per batch", "runs"):  # fmt: skip
        table.add_column(header, justify="right" if header not in ("target",) else "left")
    for row in rows:
        if not row.get("runs"):
            table.add_row(str(row["workers"]), "-", "-", "-", "-", "-", "no verified run", "-", "-", "0")
            continue
        target = row["target"]
        table.add_row(
            str(row["workers"]), f"{row['median_rows_per_second']:,.0f}",
            f"{row['min_rows_per_second']:,.0f}-{row['max_rows_per_second']:,.0f}", f"{row['median_seconds']:.2f}",
            f"{row['speedup']:.2f}", f"{row['efficiency']:.2f}", f"{target['wanted']}{_mark(target['met'])}",
            f"{row['peak_rss_mb_min']:.0f}-{row['peak_rss_mb_max']:.0f} MB",
            f"{row['retries_per_batch']:.4f} ({row['retries']}/{row['batches']})", str(row["runs"]),
        )  # fmt: skip
    console.print(table)


def show_takeovers(console: Console, takeovers: Sequence[dict[str, Any]]) -> None:
    """The takeover figures, one row per mode."""
    if not takeovers:
        return
    table = Table(title="Takeover after a worker is killed (W=2, then fresh runs back to back)")
    for header in ("mode", "lease s", "killed at", "lease left", "rows left in it", "taken over after", "how",
                   "polled", "all synced after", "fresh runs", "verified"):  # fmt: skip
        table.add_column(header, justify="left" if header in ("mode", "how") else "right")
    for record in takeovers:

        def seconds(key: str, record: dict[str, Any] = record) -> str:
            return f"{record[key]:.2f}s" if key in record else "-"

        table.add_row(
            record["mode"], f"{record['lease_seconds']:g}", seconds("killed_after_seconds"),
            seconds("lease_seconds_left_at_kill"), f"{record.get('rows_left_in_them', 0):,}",
            seconds("takeover_seconds"), record.get("takeover_why", "-"),
            seconds("takeover_polled_seconds"), seconds("converged_seconds"), str(record.get("cron_runs", "-")),
            "[green]yes[/]" if record["verified"] else "[red]no[/]",
        )  # fmt: skip
    console.print(table)
