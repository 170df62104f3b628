"""Benchmark: the end-day check (`zonesync end-day`) of the demo payments mapping on PostgreSQL (both zones).

    .venv/bin/python -m bench.end_day            # 1,000,000 eligible payments, 3 repetitions (~10 minutes)
    .venv/bin/python -m bench.end_day --quick    # 100,000 eligible payments, 1 repetition

Creates `zs_bench_eod_src` (internet zone: `payment` with `client_ip` and `is_sync`, plus the partial index
`zonesync init` recommends) and `zs_bench_eod_dst` (intranet zone: `payment` and the bookkeeping tables), and
starts a Prefect test server, none of it timed. Each repetition starts from freshly generated data: the
eligible payments (status 'S', unsynced) of one business date plus a tenth as many failed ones ('F', never
eligible), generated server-side. Then:

- floor:       COPY of the eligible rows TO STDOUT streamed into COPY FROM STDIN on the intranet table, then
               the flag UPDATE in the internet zone (then, untimed for the ratio, `reconcile_mapping` alone);
- first run:   fresh data again, then `zonesync end-day --date D` in its own process against the server, as a
               worker runs it: wall time, peak RSS, and the split read back from Prefect (task runs, artifact)
               and `batch_job`;
- second run:  the same command right after: nothing left to sync, the reconciliation only.

Every run is verified (intranet rows equal to the eligible internet rows, every eligible row flagged and no
failed one, batch_job counts and status); a failed run is excluded and makes the command exit 1. Nothing is
asserted about speed. Results: printed tables and bench/results/end_day-<time>-<rows>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.configs import EndDayConfig
from bench.database import DatabasePair, database_pair, drop_databases, recreate_databases
from bench.end_day_data import DAY, TIMEZONE, create_zones, fresh_data, verify
from bench.end_day_report import print_repetition, show, summarise
from bench.end_day_runs import floor_end_day, reconcile_alone, run_end_day
from bench.retry_sync import DEFAULT_PG_URL, RESULTS, ROOT, environment, prepare_prefect, product_revision


def parse_args(argv: list[str] | None) -> EndDayConfig:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.end_day", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="eligible payments (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3; medians are reported)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100k eligible payments, 1 repetition")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases afterwards")
    parser.add_argument("--pg-url", default=os.environ.get("ZONESYNC_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--db-prefix", default="zs_bench_eod", help="databases <prefix>_src (internet), _dst")
    parser.add_argument("--no-pending-index", dest="pending_index", action="store_false",
                        help="skip the partial index on unsynced keys that `zonesync init` recommends")  # fmt: skip
    args = parser.parse_args(argv)
    rows, repeat = (100_000, 1) if args.quick else (args.rows, args.repeat)
    if rows < 1000 or repeat < 1:
        parser.error("--rows must be at least 1000 and --repeat at least 1")
    return EndDayConfig(rows, repeat, args.pg_url, args.db_prefix, args.keep, args.pending_index)


# -- the plan --------------------------------------------------------------------------------------
def repetition(pair: DatabasePair, config: EndDayConfig, rep: int) -> dict[str, Any]:
    """Fresh data, floor (+ reconcile alone), fresh data, first and second end-day run; each verified."""
    runs: dict[str, Any] = {"repetition": rep}
    fresh_data(pair, config)
    load = os.getloadavg()[0]
    floor = floor_end_day(pair)
    alone, agree = reconcile_alone(pair)  # before verify() reads both tables: as the flow meets them
    problems = verify(pair)
    if (floor.rows, floor.flagged) != (config.rows, config.rows):
        problems.append(f"floor moved {floor.rows} and flagged {floor.flagged} rows, expected {config.rows}")
    runs["floor"] = asdict(floor) | {"load_average_1m": load, "problems": problems}
    runs["reconcile_alone"] = {"seconds": round(alone, 3), "zones_agree": agree}
    fresh_data(pair, config)
    for name, expected in (("first", ("SUCCESS", config.rows)), ("second", ("NO_RECORD", 0))):
        run = runs[name] = run_end_day(pair)
        job = run.get("batch_job") or {}
        run["problems"] = verify(pair)
        if run["exit_code"] != 0 or (job.get("status"), job.get("synced")) != expected:
            run["problems"].append(f"exit {run['exit_code']}, batch_job {job}; expected {expected}")
        parts = [run.get(f"{part}_seconds") for part in ("flow_run", "sync_task", "reconcile_task")]
        run["flow_rest_seconds"] = None if None in parts else parts[0] - parts[1] - parts[2]  # type: ignore[operator]
    print_repetition(runs)
    return runs


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every repetition verified, 1 otherwise."""
    config = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="zs-bench-prefect-") as home:
        prepare_prefect(home)
        return _run(config)


def _run(config: EndDayConfig) -> int:
    pair = database_pair(config.pg_url, config.prefix)
    revision = product_revision()
    dirty = len(revision["product_code_uncommitted_changes"])
    print(
        f"zonesync end-day benchmark: {config.rows:,} eligible + {config.total - config.rows:,} failed payments, "
        f"{config.repeat} repetition(s), on {pair.describe()}; product at {revision['commit'][:10]}"
        + (f" with {dirty} uncommitted change(s)" if dirty else "")
        + f"; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    setup, reps = _measure(pair, config)
    summary = summarise(reps, config.rows)
    show(summary)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "benchmark": "end_day",
        "finished_at": stamp,
        "config": asdict(config) | {"pg_url": pair.describe(), "business_date": DAY, "timezone": TIMEZONE},
        "revision": revision,
        "environment": environment(),
        "setup": setup,
        "summary": summary,
        "runs": reps,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"end_day-{stamp}-{config.rows}.json"
    path.write_text(json.dumps(document, indent=2, default=str))
    print(f"Results written to {path.relative_to(ROOT)}")
    return 1 if summary["failed_repetitions"] else 0


def _measure(pair: DatabasePair, config: EndDayConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fresh zones, the Prefect server, an untimed warm-up, then every repetition; the setup facts and the runs."""
    recreate_databases(pair)
    os.environ["ZONESYNC_INTERNET_URL"] = pair.url(pair.source_db).render_as_string(hide_password=False)
    os.environ["ZONESYNC_INTRANET_URL"] = pair.url(pair.target_db).render_as_string(hide_password=False)
    os.environ |= {"ZONESYNC_MAPPING_MODULES": "zonesync.schemas.examples", "ZONESYNC_BUSINESS_TIMEZONE": TIMEZONE}
    setup: dict[str, Any] = {}
    try:
        setup["pending_index_ddl"] = create_zones(pair, config)
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=90):
            warm = run_end_day(pair, DAY - timedelta(days=1))  # empty zones: imports, server, first flow run
            setup["warm_up"] = {key: warm.get(key) for key in ("seconds", "exit_code", "peak_rss_mb")}
            print(f"warm-up run on empty zones (untimed): {warm['seconds']:.2f}s, exit {warm['exit_code']}")
            reps = [repetition(pair, config, rep) for rep in range(1, config.repeat + 1)]
    finally:
        if not config.keep:
            drop_databases(pair)
    return setup, reps


if __name__ == "__main__":
    raise SystemExit(main())
