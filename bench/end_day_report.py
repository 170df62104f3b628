"""The end-day benchmark's report: a line per run as it finishes, the medians of the repetitions and their table."""

from __future__ import annotations

import sys
from typing import Any

from bench.measure import median


def print_repetition(runs: dict[str, Any]) -> None:
    """One line for the floor and one for each `zonesync end-day` run of a repetition, with its verdict."""

    def verdict(run: dict[str, Any]) -> str:
        return f"load {run['load_average_1m']:.2f} " + ("ok" if not run["problems"] else f"FAILED {run['problems']}")

    def s(value: float | None) -> str:
        return "?" if value is None else f"{value:.2f}s"

    rep, floor = runs["repetition"], runs["floor"]
    print(
        f"#{rep} floor  {floor['seconds']:.2f}s [transfer {floor['transfer_seconds']:.2f}s, flag "
        f"{floor['flag_seconds']:.2f}s], then reconcile_mapping alone {runs['reconcile_alone']['seconds']:.2f}s; "
        + verdict(floor),
        flush=True,
    )
    for name in ("first", "second"):
        run = runs[name]
        print(
            f"#{rep} {name:<6} {run['seconds']:.2f}s: flow run {s(run.get('flow_run_seconds'))} [sync task "
            f"{s(run.get('sync_task_seconds'))} (engine {s(run.get('engine_seconds'))}), reconcile task "
            f"{s(run.get('reconcile_task_seconds'))}], peak RSS {run['peak_rss_mb']:.0f} MB, CPU "
            f"{run['cpu_seconds']:.1f}s; " + verdict(run),
            flush=True,
        )


# -- the summary -----------------------------------------------------------------------------------
LINES = [  # label, run, field, compared with the floor
    ("floor: COPY of the eligible rows + flag UPDATE", "floor", "seconds", True),
    ("  transfer (COPY out -> COPY in)", "floor", "transfer_seconds", False),
    ("  flag UPDATE", "floor", "flag_seconds", False),
    ("reconcile_mapping alone (no Prefect, after the floor)", "reconcile_alone", "seconds", False),
    ("first run: `zonesync end-day` process, wall", "first", "seconds", True),
    ("  flow run (server: start -> end)", "first", "flow_run_seconds", True),
    ("    sync task (sync-mapping)", "first", "sync_task_seconds", True),
    ("      engine (the report's seconds)", "first", "engine_seconds", True),
    ("    reconcile task (reconcile-mapping)", "first", "reconcile_task_seconds", False),
    ("    rest of the flow run: ledger, leases, report", "first", "flow_rest_seconds", False),
    ("  before the flow run: start-up, imports, checks", "first", "before_flow_seconds", False),
    ("  after the flow run, until the process exits", "first", "after_flow_seconds", False),
    ("second run (nothing to sync): process, wall", "second", "seconds", False),
    ("  flow run (server: start -> end)", "second", "flow_run_seconds", False),
    ("    sync task (a count)", "second", "sync_task_seconds", False),
    ("    reconcile task (fast path)", "second", "reconcile_task_seconds", False),
    ("    rest of the flow run: ledger, leases, report", "second", "flow_rest_seconds", False),
    ("  before the flow run: start-up, imports, checks", "second", "before_flow_seconds", False),
    ("  after the flow run, until the process exits", "second", "after_flow_seconds", False),
]
RUNS = ("floor", "first", "second")


def summarise(reps: list[dict[str, Any]], rows: int) -> dict[str, Any]:
    """Medians (and ranges) of the verified repetitions, with ratios against the floor."""
    good = [rep for rep in reps if not any(rep[name]["problems"] for name in RUNS)]
    floor = median(rep["floor"]["seconds"] for rep in good)
    lines = []
    for label, run, name, against_floor in LINES:
        values = [rep[run][name] for rep in good if rep[run].get(name) is not None]
        value = median(values)
        lines.append(
            {
                "measurement": label,
                "median_seconds": round(value, 3),
                "min": round(min(values, default=0), 3),
                "max": round(max(values, default=0), 3),
                "times_floor": round(value / floor, 2) if against_floor and floor else None,
                "rows_per_second": round(rows / value) if against_floor and value else None,
            }
        )
    return {
        "rows": rows,
        "verified_repetitions": len(good),
        "failed_repetitions": len(reps) - len(good),
        "lines": lines,
        "peak_rss_mb": {name: max((rep[name]["peak_rss_mb"] for rep in good), default=0) for name in RUNS[1:]},
        "load_average_1m": [rep[name]["load_average_1m"] for rep in reps for name in RUNS],
    }


def show(summary: dict[str, Any]) -> None:
    """Print the summary table."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)
    title = f"End-day check of {summary['rows']:,} eligible rows: medians of {summary['verified_repetitions']} run(s)"
    table = Table(title=title)
    for header in ("measurement", "median s", "min-max s", "x floor (s / floor s)", "eligible rows/s"):
        table.add_column(header, justify="left" if header == "measurement" else "right")
    for line in summary["lines"]:
        ratio, rate = line["times_floor"], line["rows_per_second"]
        table.add_row(
            line["measurement"],
            f"{line['median_seconds']:.2f}",
            f"{line['min']:.2f}-{line['max']:.2f}",
            "" if ratio is None else f"{ratio:.2f}",
            "" if rate is None else f"{rate / 1000:,.1f}k",
        )
    console.print(table)
    rss, load = summary["peak_rss_mb"], summary["load_average_1m"]
    console.print(
        f"Peak RSS of the `zonesync end-day` process: first run {rss['first']:.0f} MB, second run "
        f"{rss['second']:.0f} MB. 1-minute load average when the timed runs started: "
        f"{min(load, default=0):.2f}-{max(load, default=0):.2f} (2 cores).",
        highlight=False,
    )
    if summary["failed_repetitions"]:
        console.print(f"[bold red]{summary['failed_repetitions']} repetition(s) failed verification: excluded.[/]")
