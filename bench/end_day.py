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
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg import sql

from bench.database import DatabasePair, database_pair, drop_databases, recreate_databases
from bench.floor import FloorTiming
from bench.measure import MB, median
from bench.retry_sync import DEFAULT_PG_URL, RESULTS, ROOT, _environment, _prepare_prefect, _product_revision

DAY = date(2026, 11, 25)
TIMEZONE = "Asia/Jakarta"  # DAY is [2026-11-24 17:00, 2026-11-25 17:00) UTC
_GENERATE = """
INSERT INTO payment (payment_id, reference, merchant_id, account, amount, currency, status, channel,
                     customer_name, created_at, updated_at, client_ip, is_sync)
SELECT i, 'PAY-' || lpad(i::text, 12, '0'), 1 + i % 400, 'ID' || lpad(((i * 7919) % 100000000)::text, 20, '0'),
       (1 + (i * 104729) % 5000000) / 100.0, (ARRAY['IDR', 'USD', 'SGD'])[1 + i % 3],
       CASE WHEN i % {every} = 0 THEN 'F' ELSE 'S' END, (ARRAY['web', 'mobile', 'qris'])[1 + (i / 7) % 3],
       CASE WHEN i % 50 = 0 THEN NULL WHEN i % 7 = 0 THEN 'សុខ ចាន់ ' || i ELSE 'Café Ünïcode ' || i END,
       timestamptz '2026-11-24 17:00:00+00' + (i * {step}) * interval '1 microsecond',
       timestamptz '2026-11-24 17:00:05.123456+00' + (i * {step}) * interval '1 microsecond',
       '203.0.113.' || (i % 250), false
FROM generate_series(1::bigint, {total}) AS i
"""
COLUMNS = ("payment_id", "reference", "merchant_id", "account", "amount", "currency", "status", "channel",
           "customer_name", "created_at", "updated_at")  # fmt: skip


@dataclass(frozen=True)
class Config:
    """What to run."""

    rows: int
    repeat: int
    pg_url: str
    prefix: str
    keep: bool
    pending_index: bool
    failed_every: int = 10  # every 10th payment failed: a ninth as many failed rows as eligible ones

    @property
    def total(self) -> int:
        """Payments generated so that exactly `rows` of them are eligible."""
        total = self.rows * self.failed_every // (self.failed_every - 1)
        while total - total // self.failed_every < self.rows:
            total += 1
        return total


def parse_args(argv: list[str] | None) -> Config:
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
    return Config(rows, repeat, args.pg_url, args.db_prefix, args.keep, args.pending_index)


# -- the zones ------------------------------------------------------------------------------------
def create_zones(pair: DatabasePair, config: Config) -> str | None:
    """Demo payment tables in both zones, bookkeeping in the intranet; the pending-index DDL used, if any."""
    from schemas.examples.tables import internet_tables, intranet_tables
    from tasks import bookkeeping
    from tasks.dialects import dialect_for
    from tasks.engines import create_engine

    internet, intranet = create_engine(pair.url(pair.source_db)), create_engine(pair.url(pair.target_db))
    try:
        for engine, metadata in ((internet, internet_tables()), (intranet, intranet_tables())):
            metadata.create_all(engine, tables=[metadata.tables["payment"]])
        bookkeeping.create_bookkeeping(intranet)
        if not config.pending_index:
            return None
        ddl = dialect_for(internet).recommended_index(internet_tables().tables["payment"], ("payment_id",), "is_sync")
        with internet.begin() as conn:
            conn.exec_driver_sql(ddl)
        return ddl
    finally:
        internet.dispose()
        intranet.dispose()


def fresh_data(pair: DatabasePair, config: Config) -> None:
    """Empty intranet table and ledger, newly generated internet payments; VACUUM ANALYZE and CHECKPOINT."""
    step = 86_400_000_000 // (config.total + 1)  # microseconds between payments: all within the business date
    generate = sql.SQL(_GENERATE).format(every=config.failed_every, step=step, total=config.total)
    statements: dict[str, list[str | sql.Composed]] = {
        pair.target_db: ["TRUNCATE payment", "TRUNCATE batch_job, sync_error, sync_lease"],
        pair.source_db: ["TRUNCATE payment", generate],
    }
    for database, steps in statements.items():
        with pair.connect(database) as conn:
            for statement in steps:
                conn.execute(statement)
        with pair.connect(database, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")


def verify(pair: DatabasePair) -> list[str]:
    """What is wrong with the zones after an end-day sync (nothing: an empty list)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    row = sql.SQL("hashtextextended(ROW({})::text, 0)::numeric").format(columns)
    digest = sql.SQL("SELECT count(*), coalesce(sum({}), 0) FROM payment").format(row)
    with pair.connect(pair.source_db) as conn:
        eligible = conn.execute(digest + sql.SQL(" WHERE status = 'S'")).fetchone()
        flags = conn.execute("SELECT count(*) FILTER (WHERE status = 'S' AND NOT is_sync), "
                             "count(*) FILTER (WHERE status <> 'S' AND is_sync) FROM payment").fetchone()  # fmt: skip
    with pair.connect(pair.target_db) as conn:
        copied = conn.execute(digest).fetchone()
    problems = [] if eligible == copied else [f"intranet (rows, hash) {copied} != eligible internet {eligible}"]
    if flags != (0, 0):
        problems.append(f"{flags[0]} eligible rows left unflagged, {flags[1]} ineligible rows flagged")  # type: ignore[index]
    return problems


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
    from schemas.examples import PAYMENTS
    from tasks.engines import create_engine
    from tasks.reconcile import reconcile_mapping

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
    command = [sys.executable, "-m", "flows.cli", "end-day", "--date", day.isoformat()]
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


# -- the plan --------------------------------------------------------------------------------------
def repetition(pair: DatabasePair, config: Config, rep: int) -> dict[str, Any]:
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
    _print_repetition(runs)
    return runs


def _print_repetition(runs: dict[str, Any]) -> None:
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


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every repetition verified, 1 otherwise."""
    config = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="zs-bench-prefect-") as home:
        _prepare_prefect(home)
        return _run(config)


def _run(config: Config) -> int:
    pair = database_pair(config.pg_url, config.prefix)
    revision = _product_revision()
    dirty = len(revision["product_code_uncommitted_changes"])
    print(
        f"zonesync end-day benchmark: {config.rows:,} eligible + {config.total - config.rows:,} failed payments, "
        f"{config.repeat} repetition(s), on {pair.describe()}; product at {revision['commit'][:10]}"
        + (f" with {dirty} uncommitted change(s)" if dirty else "")
        + f"; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    recreate_databases(pair)
    os.environ["ZONESYNC_INTERNET_URL"] = pair.url(pair.source_db).render_as_string(hide_password=False)
    os.environ["ZONESYNC_INTRANET_URL"] = pair.url(pair.target_db).render_as_string(hide_password=False)
    os.environ |= {"ZONESYNC_MAPPING_MODULES": "schemas.examples", "ZONESYNC_BUSINESS_TIMEZONE": TIMEZONE}
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
    summary = summarise(reps, config.rows)
    show(summary)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "benchmark": "end_day",
        "finished_at": stamp,
        "config": asdict(config) | {"pg_url": pair.describe(), "business_date": DAY, "timezone": TIMEZONE},
        "revision": revision,
        "environment": _environment(),
        "setup": setup,
        "summary": summary,
        "runs": reps,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"end_day-{stamp}-{config.rows}.json"
    path.write_text(json.dumps(document, indent=2, default=str))
    print(f"Results written to {path.relative_to(ROOT)}")
    return 1 if summary["failed_repetitions"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
