"""Benchmark: the `retry_sync` flow against the pure-database floor, on PostgreSQL.

Run from the repository root (PostgreSQL must accept the URL's user; nothing else is needed):

    .venv/bin/python -m bench.retry_sync            # 1M rows, 3 repetitions: several minutes
    .venv/bin/python -m bench.retry_sync --quick    # 100k rows, 1 repetition: a smoke run

It creates a throw-away database pair (`zs_bench_src`, `zs_bench_dst`), fills a 12-column source table
server-side with `generate_series`, and starts a Prefect test server before anything is timed. Then,
alternating and with every run starting from the same reset state (not timed):

- full:        floor-copy (COPY TO STDOUT streamed into COPY FROM STDIN, then one flag UPDATE),
               floor-upsert (the same through a temporary table and INSERT ... ON CONFLICT), and
               zonesync (the `retry_sync` flow call);
- scaling:     floor-copy and zonesync on a table a tenth the size (same DDL);
- incremental: with every row synced, 1 % of the rows touched and unflagged; floor-upsert vs zonesync.

Every run is verified (target rows equal to the source's mapped values, every row flagged, the flow's
counts) and a run that fails verification is excluded and makes the command exit 1. Results are printed
as tables and written to bench/results/retry_sync-<time>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.configs import RetrySyncConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str] | None) -> RetrySyncConfig:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.retry_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="source rows (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each measurement (default 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="zonesync batch size (default: settings)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100k rows, 1 repetition")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases afterwards")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("ZONESYNC_TEST_POSTGRES_URL", DEFAULT_PG_URL),
        help="PostgreSQL server URL (default: $ZONESYNC_TEST_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument("--db-prefix", default="zs_bench", help="database names: <prefix>_src, <prefix>_dst")
    parser.add_argument(
        "--fillfactor",
        type=int,
        default=None,
        help="fillfactor of the source table (room for in-place flag updates; default: PostgreSQL's 100)",
    )
    parser.add_argument(
        "--no-pending-index",
        dest="pending_index",
        action="store_false",
        help="do not create the partial index on unsynced keys that `zonesync init` recommends",
    )
    args = parser.parse_args(argv)
    rows, repeat = (100_000, 1) if args.quick else (args.rows, args.repeat)
    if rows < 1000:
        parser.error("--rows must be at least 1000")
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    return RetrySyncConfig(
        rows, repeat, args.batch_size, args.pg_url, args.db_prefix, args.keep, args.pending_index, args.fillfactor
    )


def prepare_prefect(home: str) -> None:
    """Prefect settings for an offline, isolated server; set before Prefect is imported."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PREFECT_HOME"] = home


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run verified, 1 otherwise."""
    config = parse_args(argv)
    if str(ROOT) not in sys.path:  # `python bench/retry_sync.py` as well as `-m bench.retry_sync`
        sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="zs-bench-prefect-") as home:
        prepare_prefect(home)
        return _run(config)


def _run(config: RetrySyncConfig) -> int:
    from rich.console import Console

    from bench.measure import MB, current_rss, max_rss

    rss = {"interpreter": current_rss()}
    import zonesync.flows.retry_sync  # noqa: F401  (the product's import footprint, before anything runs)
    from bench import database
    from bench.runner import Bench, configure_zonesync
    from bench.summary import show, summarise

    rss["after_imports"] = current_rss()
    console = Console() if sys.stdout.isatty() else Console(width=200)
    pair = database.database_pair(config.pg_url, config.prefix)
    revision = product_revision()
    console.rule(
        f"zonesync retry_sync benchmark: {config.rows:,} rows, {config.repeat} repetition(s), on {pair.describe()}"
    )
    dirty = len(revision["product_code_uncommitted_changes"])
    console.print(f"product at {revision['commit'][:10]}" + (f" with {dirty} uncommitted change(s)" if dirty else ""))
    database.recreate_databases(pair)
    try:
        bench = Bench(pair, config, console)
        bench.revision = revision
        bench.setup()
        batch_size = configure_zonesync(pair, config.batch_size)
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=90):
            rss["server_started"] = current_rss()
            bench.run_all(batch_size)
            bench.setup_facts["worker_process"] = bench.worker_process(batch_size)
    finally:
        from zonesync.tasks.zones.engines import dispose_engines

        dispose_engines()
        if not config.keep:
            database.drop_databases(pair)
    if "rss_mb_after_warm_up" in bench.setup_facts:
        rss["after_warm_up"] = int(bench.setup_facts.pop("rss_mb_after_warm_up") * MB)
    bench.setup_facts["rss_mb_checkpoints"] = {name: round(value / MB, 1) for name, value in rss.items()}
    console.print(
        "RSS checkpoints: " + ", ".join(f"{name} {value / MB:.0f} MB" for name, value in rss.items()), highlight=False
    )
    summary = summarise(bench.runs, max_rss())
    show(console, summary)
    path = _write_results(config, batch_size, bench, summary)
    console.print(f"Results written to {path.relative_to(ROOT)}")
    return 1 if summary["failed_runs"] else 0


def product_revision() -> dict[str, Any]:
    """The commit measured, and whether the product code differed from it (others may be editing it)."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "flows", "tasks", "schemas")
    return {"commit": git("rev-parse", "HEAD"), "product_code_uncommitted_changes": changed.splitlines()}


def environment() -> dict[str, Any]:
    """The Python and library versions, CPU count and load average, for a results file."""
    import connectorx
    import polars
    import prefect
    import psycopg

    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "prefect": prefect.__version__,
        "polars": polars.__version__,
        "psycopg": psycopg.__version__,
        "connectorx": getattr(connectorx, "__version__", "?"),
    }


def _write_results(config: RetrySyncConfig, batch_size: int, bench: Any, summary: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"retry_sync-{stamp}-{config.rows}.json"
    settings = asdict(config) | {"pg_url": bench.pair.describe(), "batch_size": batch_size}
    document = {
        "benchmark": "retry_sync",
        "finished_at": stamp,
        "config": settings,
        "revision": bench.revision,
        "environment": environment() | bench.server_facts,
        "setup": bench.setup_facts,
        "summary": summary,
        "runs": [run.as_json() for run in bench.runs],
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
