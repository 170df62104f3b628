"""Benchmark: W worker processes sharing one partitioned 1M-row mapping on PostgreSQL (the scale-out).

    .venv/bin/python -m bench.scale_out                       # 1M rows, W = 1, 2, 4, 8, both regimes, takeover
    .venv/bin/python -m bench.scale_out --quick --workers 1,2 # 100k rows: a smoke run

Each worker is a real process running the real `retry_sync` flow against one shared Prefect server; the workers
import, connect and warm up, say ready, and are released together ("go"); the wall time runs from go to the last
worker's report. Two regimes: `latency` (a fixed sleep before every round trip to a database in the workers,
standing for a cross-zone network of a few milliseconds; small batches) and `cpu` (no delay, the default batch
size). Then the takeover: W=2, one worker killed mid-run, fresh runs until every row is synced. Every run is
verified; one that fails makes the command exit 1. Nothing about speed is asserted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.scale_config import REGIMES, TAKEOVER_MODES, ScaleConfig

if TYPE_CHECKING:
    from bench.scale_runs import ScaleBench

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DELAY_MS = 5.0
DEFAULT_LATENCY_BATCH = 1000


def _names(text: str, allowed: tuple[str, ...], option: str, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip() and name.strip() != "none")
    if unknown := [name for name in names if name not in allowed]:
        parser.error(f"{option}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return names


def _options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--rows", type=int, default=1_000_000, help="source rows (default 1,000,000)")
    add("--workers", default="1,2,4,8", help="worker counts, comma-separated (default 1,2,4,8)")
    add("--regimes", default=",".join(REGIMES), help="latency, cpu or both (default both)")
    add("--delay-ms", type=float, default=DEFAULT_DELAY_MS, help="latency regime: ms before every round trip")
    add("--batch-size", type=int, default=DEFAULT_LATENCY_BATCH, help="latency regime: rows per batch")
    add("--cpu-batch-size", type=int, default=None, help="cpu regime: rows per batch (default: the setting)")
    add("--partitions", type=int, default=32, help="partitions of the mapping (default 32)")
    add("--partition-block", type=int, default=1, help="neighbouring keys per block of a partition (default 1)")
    add("--repeat", type=int, default=1, help="repetitions of each run (medians; default 1)")
    add("--quick", action="store_true", help="100,000 rows")
    add("--lease-seconds", type=float, default=10, help="ZONESYNC_LEASE_SECONDS of every worker (default 10)")
    add("--takeover", default=",".join(TAKEOVER_MODES), help="same-host, other-hosts, both (default) or none")
    add("--budget", type=int, default=None, metavar="CARRIERS",
        help="both zones' connection budget: room for this many carriers at once (default: none)")  # fmt: skip
    add("--prefect-server", choices=("postgres", "sqlite", "harness"), default="postgres", help="see bench/README.md")
    add("--keep", action="store_true", help="keep the databases afterwards")
    add("--db-prefix", default="zs_scale", help="databases <prefix>_src and <prefix>_dst (default zs_scale)")
    add("--pg-url", default=os.environ.get("ZONESYNC_TEST_POSTGRES_URL", DEFAULT_PG_URL),
        help="PostgreSQL server URL (default: $ZONESYNC_TEST_POSTGRES_URL or %(default)s)")  # fmt: skip
    return parser


def parse_args(argv: list[str] | None) -> ScaleConfig:
    """Command-line options."""
    parser = _options()
    args = parser.parse_args(argv)
    try:
        workers = tuple(sorted({int(part) for part in args.workers.split(",") if part.strip()}))
    except ValueError:
        parser.error("--workers: whole numbers, comma-separated")
    if not workers or min(workers) < 1:
        parser.error("--workers: at least one count, each at least 1")
    if not args.db_prefix.startswith("zs_scale"):
        parser.error("--db-prefix must start with zs_scale")
    if args.budget is not None and args.budget < 1:
        parser.error("--budget: at least one carrier")
    if args.repeat < 1 or args.lease_seconds < 2 or not 1 <= args.partitions <= 1024 or args.partition_block < 1:
        parser.error("--repeat >= 1, --lease-seconds >= 2, 1 <= --partitions <= 1024, --partition-block >= 1")
    return ScaleConfig(
        rows=100_000 if args.quick else args.rows, workers=workers,
        regimes=_names(args.regimes, REGIMES, "--regimes", parser), delay_ms=args.delay_ms,
        latency_batch_size=args.batch_size, cpu_batch_size=args.cpu_batch_size, partitions=args.partitions,
        partition_block=args.partition_block,
        repeat=args.repeat, lease_seconds=args.lease_seconds,
        takeover=_names(args.takeover, TAKEOVER_MODES, "--takeover", parser), pg_url=args.pg_url,
        prefix=args.db_prefix, keep=args.keep, prefect_server=args.prefect_server, budget=args.budget,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run verified, 1 otherwise."""
    config = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    scratch = Path(tempfile.mkdtemp(prefix="zs-scale-"))  # the workers' logs are kept with --keep
    home, logs = scratch / "prefect", scratch / "logs"
    home.mkdir()
    logs.mkdir()
    os.environ |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(home),
                   "ZONESYNC_BENCH_PARTITIONS": str(config.partitions),
                   "ZONESYNC_BENCH_PARTITION_BLOCK": str(config.partition_block)}  # fmt: skip
    try:
        return _run(config, home, logs)
    finally:
        if not config.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(config: ScaleConfig, home: Path, logs: Path) -> int:
    from rich.console import Console

    from bench import database, scale_data
    from bench.scale_mappings import BENCH_PAYMENTS_SCALED, BENCH_PAYMENTS_WARM_UP
    from bench.scale_runs import ScaleBench
    from bench.scale_server import prefect_api
    from zonesync.schemas.settings import get_settings

    console = Console() if sys.stdout.isatty() else Console(width=200)
    pair = database.database_pair(config.pg_url, config.prefix)
    blocks = f" (blocks of {config.partition_block} keys)" if config.partition_block > 1 else ""
    budget = f", a budget of {config.budget} carriers" if config.budget else ""
    console.rule(f"zonesync scale-out: {config.rows:,} rows in {config.partitions} partitions{blocks}, W = "
                 f"{', '.join(map(str, config.workers))}{budget}, on {pair.describe()}")  # fmt: skip
    try:
        setup = scale_data.set_up(pair, BENCH_PAYMENTS_SCALED, BENCH_PAYMENTS_WARM_UP, config.rows)
        console.print(f"set up {config.rows:,} rows; partition index: {setup['partition_index_ddl']}", highlight=False)
        with prefect_api(config.prefect_server, home, pair, config.prefix) as api_url:
            console.print(f"Prefect server ({config.prefect_server}) at {api_url}; worker logs in {logs}")
            if config.budget:
                _set_budget(api_url, config.budget)
            bench = ScaleBench(pair, config, BENCH_PAYMENTS_SCALED, api_url, logs, console, get_settings().batch_size)
            takeovers = _plan(bench)
    finally:
        if not config.keep:
            database.drop_databases(pair)
    return _report(bench, setup, takeovers)


def _set_budget(api_url: str, carriers: int) -> None:
    """Both zones' connection budget on the benchmark's Prefect server: room for `carriers` at once."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from zonesync.schemas.settings import ZONES
    from zonesync.tasks.zones.budget import set_budget
    from zonesync.tasks.zones.engines import CONNECTIONS_PER_SLICE

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        for zone in ZONES:
            set_budget(zone, carriers * CONNECTIONS_PER_SLICE)


def _plan(bench: ScaleBench) -> list[dict[str, Any]]:
    """Every regime's runs (W in increasing order, repeated), then the takeover drills."""
    from bench.scale_runs import measure
    from bench.scale_takeover import takeover

    config = bench.config
    for regime in config.regimes:
        for repetition in range(1, config.repeat + 1):
            for workers in config.workers:
                try:
                    measure(bench, regime, workers, repetition)
                except RuntimeError as exc:  # a worker died or never answered: a failed run, reported
                    bench.console.print(f"[bold red]{regime} W={workers} #{repetition} failed: {exc}[/]")
                    bench.runs.append({"regime": regime, "workers": workers, "repetition": repetition,
                                       "verified": False, "problems": [str(exc)]})  # fmt: skip
    return [takeover(bench, mode) for mode in config.takeover]


def _report(bench: ScaleBench, setup: dict[str, Any], takeovers: list[dict[str, Any]]) -> int:
    from bench.scale_report import show_regime, show_takeovers, summarise_regime
    from bench.scale_runs import latency_share

    config = bench.config
    measured = [run for run in bench.runs if "seconds" in run]
    summary: dict[str, Any] = {}
    for regime in config.regimes:
        summary[regime] = summarise_regime(regime, measured)
        size = config.batch_size(regime, bench.default_batch_size)
        delay = f", {config.delay(regime):g} ms before every round trip" if config.delay(regime) else ", no delay"
        show_regime(bench.console, regime, summary[regime], f"{regime}: {config.rows:,} rows, batch {size:,}{delay}")
    singles = [run for run in measured if run["regime"] == "latency" and run["workers"] == 1 and run["verified"]]
    if singles:
        shares = [latency_share(run) for run in singles]
        summary["latency_share_w1"] = shares
        bench.console.print(f"latency regime, W=1: the added sleeps cover {shares[0]['covered']:.0%} of the wall time")
    show_takeovers(bench.console, takeovers)
    failed = [run for run in bench.runs if not run["verified"]] + [t for t in takeovers if not t["verified"]]
    if failed:
        bench.console.print(f"[bold red]{len(failed)} run(s) failed verification (see the JSON).[/]")
    path = _write(config, bench, setup, summary, takeovers)
    bench.console.print(f"Results written to {path.relative_to(ROOT)}")
    return 1 if failed else 0


def _write(config: ScaleConfig, bench: ScaleBench, setup: dict[str, Any], summary: dict[str, Any],
           takeovers: list[dict[str, Any]]) -> Path:  # fmt: skip
    from bench.retry_sync import environment, product_revision

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"scale_out-{stamp}-{config.rows}.json"
    document = {
        "benchmark": "scale_out", "finished_at": stamp,
        "config": asdict(config) | {"pg_url": bench.pair.describe(), "default_batch_size": bench.default_batch_size},
        "revision": product_revision(), "environment": environment(), "setup": setup, "summary": summary,
        "takeovers": takeovers, "runs": bench.runs,
    }  # fmt: skip
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
