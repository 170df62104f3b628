"""The measurements: set up, reset before every run (untimed), time one method, verify what it left."""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console

from bench import database
from bench.configs import RetrySyncConfig
from bench.floor import FloorMode, floor_sync
from bench.mappings import BENCH_PAYMENTS, BENCH_PAYMENTS_SMALL
from bench.measure import MB, PhaseTimer, Run, Stopwatch, current_rss
from zonesync.schemas.mapping import SyncMapping

_SERVER_SETTINGS = ("shared_buffers", "work_mem", "maintenance_work_mem", "synchronous_commit", "fsync",
                    "max_wal_size", "wal_level", "max_parallel_workers_per_gather")  # fmt: skip


def configure_zonesync(pair: database.DatabasePair, batch_size: int | None) -> int:
    """Point zonesync's settings at the benchmark databases and mappings; return the batch size to use."""
    from zonesync.schemas.registry import _registry
    from zonesync.schemas.settings import get_settings
    from zonesync.tasks.zones.engines import dispose_engines

    os.environ["ZONESYNC_MAPPING_MODULES"] = "bench.mappings"
    os.environ["ZONESYNC_INTRANET_URL"] = pair.url(pair.source_db).render_as_string(hide_password=False)
    os.environ["ZONESYNC_INTERNET_URL"] = pair.url(pair.target_db).render_as_string(hide_password=False)
    get_settings.cache_clear()
    _registry.cache_clear()
    dispose_engines()
    return batch_size or get_settings().batch_size


class Bench:
    """Runs every measurement of one benchmark invocation and keeps the runs."""

    def __init__(self, pair: database.DatabasePair, config: RetrySyncConfig, console: Console) -> None:
        self.pair = pair
        self.config = config
        self.console = console
        self.runs: list[Run] = []
        self.setup_facts: dict[str, Any] = {}
        self.server_facts: dict[str, Any] = {}
        self.revision: dict[str, Any] = {}
        self.small_rows = config.rows // config.scaling_divisor

    # -- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Create and fill both table pairs; bring them to the state every later reset reproduces."""
        for mapping, rows in ((BENCH_PAYMENTS, self.config.rows), (BENCH_PAYMENTS_SMALL, self.small_rows)):
            started = time.perf_counter()
            ddl = database.create_tables(
                self.pair, mapping, pending_index=self.config.pending_index, fillfactor=self.config.fillfactor
            )
            database.generate_rows(self.pair, mapping, rows)
            database.flag_all(self.pair, mapping)
            # One flag round trip, so the first timed run meets the same (vacuumed, updated-before) heap as
            # every later one.
            database.reset_full(self.pair, mapping)
            self.setup_facts[mapping.name] = {
                "rows": rows,
                "generate_seconds": round(time.perf_counter() - started, 2),
                "pending_index_ddl": ddl,
                "table_bytes_after_setup": database.table_bytes(self.pair, mapping),
            }
            self.console.print(f"set up {mapping.source_table}: {rows:,} rows in {time.perf_counter() - started:.1f}s")
        with self.pair.connect(self.pair.source_db) as conn:
            self.server_facts["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            for name in _SERVER_SETTINGS:
                self.server_facts[f"pg_{name}"] = conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]

    # -- the plan ---------------------------------------------------------------------------------
    def run_all(self, batch_size: int) -> None:
        """Warm up, then full + scaling runs alternating, then the incremental runs."""
        self._warm_up(batch_size)
        rows, small = self.config.rows, self.small_rows
        for rep in range(1, self.config.repeat + 1):
            self._full_floor("full", BENCH_PAYMENTS, "copy", rep, rows)
            self._full_floor("full", BENCH_PAYMENTS, "upsert", rep, rows)
            self._full_zonesync("full", BENCH_PAYMENTS, rep, rows, batch_size)
            self._full_floor("scaling", BENCH_PAYMENTS_SMALL, "copy", rep, small)
            self._full_zonesync("scaling", BENCH_PAYMENTS_SMALL, rep, small, batch_size)
        self._ensure_synced(BENCH_PAYMENTS)
        for rep in range(1, self.config.repeat + 1):
            changed = database.reset_incremental(self.pair, BENCH_PAYMENTS, self.config.incremental_every)
            self._floor("incremental", BENCH_PAYMENTS, "upsert", rep, changed)
            changed = database.reset_incremental(self.pair, BENCH_PAYMENTS, self.config.incremental_every)
            self._zonesync("incremental", BENCH_PAYMENTS, rep, changed, batch_size)

    def worker_process(self, batch_size: int) -> dict[str, Any]:
        """One full sync the way a work-pool worker runs it: `zonesync retry` in its own process, against
        the running Prefect server. Returns its wall time and peak RSS (the memory figure that matters: this
        benchmark's own process also hosts the test server and keeps every run's results)."""
        import subprocess
        import sys

        from prefect.settings import PREFECT_API_URL

        database.reset_full(self.pair, BENCH_PAYMENTS)
        command = [
            sys.executable,
            "-m",
            "zonesync.flows.cli",
            "retry",
            "-m",
            BENCH_PAYMENTS.name,
            "--batch-size",
            str(batch_size),
        ]
        env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        facts = {
            "rows": self.config.rows, "seconds": round(seconds, 2), "exit_code": process.returncode,
            "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "verified": database.verify(self.pair, BENCH_PAYMENTS).ok,
        }  # fmt: skip
        self.console.print(
            f"worker process (`zonesync retry`, {self.config.rows:,} rows): {seconds:.2f}s, peak RSS "
            f"{facts['peak_rss_mb']:.0f} MB, exit {process.returncode}, verified {facts['verified']}",
            highlight=False,
        )
        return facts

    def _warm_up(self, batch_size: int) -> None:
        """One untimed flow call first: imports, the Prefect client and the first connections."""
        from zonesync.flows.retry_sync import retry_sync

        database.reset_full(self.pair, BENCH_PAYMENTS_SMALL)
        started = time.perf_counter()
        report = retry_sync(mappings=[BENCH_PAYMENTS_SMALL.name], batch_size=batch_size)
        seconds = time.perf_counter() - started
        self.setup_facts["warm_up_flow_call_seconds"] = round(seconds, 2)
        self.setup_facts["warm_up_status"] = report[BENCH_PAYMENTS_SMALL.name].status
        self.setup_facts["rss_mb_after_warm_up"] = round(current_rss() / MB, 1)
        self.console.print(f"warm-up flow call ({self.small_rows:,} rows, untimed): {seconds:.2f}s")

    def _ensure_synced(self, mapping: SyncMapping) -> None:
        if not database.verify(self.pair, mapping).ok:
            database.reset_full(self.pair, mapping)
            floor_sync(self.pair, mapping, "copy")

    def _full_floor(self, case: str, mapping: SyncMapping, mode: FloorMode, rep: int, rows: int) -> None:
        database.reset_full(self.pair, mapping)
        self._floor(case, mapping, mode, rep, rows)

    def _full_zonesync(self, case: str, mapping: SyncMapping, rep: int, rows: int, batch_size: int) -> None:
        database.reset_full(self.pair, mapping)
        self._zonesync(case, mapping, rep, rows, batch_size)

    # -- one timed run ----------------------------------------------------------------------------
    def _floor(self, case: str, mapping: SyncMapping, mode: FloorMode, rep: int, rows: int) -> None:
        with Stopwatch() as watch:
            timing = floor_sync(self.pair, mapping, mode)
        check = database.verify(self.pair, mapping)
        problems = [] if check.ok else [f"verification failed: {check}"]
        if timing.rows != rows or timing.flagged != rows:
            problems.append(f"moved {timing.rows} and flagged {timing.flagged} rows, expected {rows}")
        detail = {"transfer_seconds": round(timing.transfer_seconds, 4), "flag_seconds": round(timing.flag_seconds, 4)}
        self._record(case, f"floor-{mode}", rep, rows, watch, problems, detail)

    def _zonesync(self, case: str, mapping: SyncMapping, rep: int, rows: int, batch_size: int) -> None:
        from zonesync.flows.retry_sync import retry_sync
        from zonesync.tasks.sync.run import PHASE_HOOK

        problems: list[str] = []
        detail: dict[str, Any] = {}
        timer = PhaseTimer()
        hooked = PHASE_HOOK.set(timer.phase)
        with Stopwatch() as watch:
            try:
                report = retry_sync(mappings=[mapping.name], batch_size=batch_size)
            except Exception as exc:  # recorded as a failed run, and the command exits 1
                problems.append(f"flow raised {type(exc).__name__}: {exc}")
                report = None
            finally:
                PHASE_HOOK.reset(hooked)
        if report is not None:
            result = report[mapping.name]
            detail = {
                "engine_seconds": round(result.seconds, 4),
                "phase_seconds": {name: round(value, 4) for name, value in timer.seconds.items()},
                "batches": result.batches, "batch_size": batch_size, "status": result.status,
                "read": result.read, "upserted": result.upserted, "flagged": result.flagged,
                "quarantined": result.quarantined, "changed_in_flight": result.changed_in_flight,
                "message": result.message,
            }  # fmt: skip
            counts = (result.read, result.upserted, result.flagged)
            if result.status != "success" or counts != (rows, rows, rows) or result.quarantined:
                problems.append(
                    f"flow result {result.status} {counts}, {result.quarantined} quarantined; expected {rows}"
                )
        check = database.verify(self.pair, mapping)
        if not check.ok:
            problems.append(f"verification failed: {check}")
        self._record(case, "zonesync", rep, rows, watch, problems, detail)

    def _record(
        self, case: str, method: str, rep: int, rows: int, watch: Stopwatch, problems: list[str], detail: dict[str, Any]
    ) -> None:
        run = Run(
            case=case, method=method, repetition=rep, rows=rows, seconds=watch.seconds, cpu_seconds=watch.cpu_seconds,
            rss_baseline=watch.rss.baseline, rss_peak=watch.rss.peak, load_average=watch.load_average,
            verified=not problems, detail=detail | ({"problems": problems} if problems else {}),
        )  # fmt: skip
        self.runs.append(run)
        self._print(run)

    def _print(self, run: Run) -> None:
        extra = ""
        if "phase_seconds" in run.detail:
            phases = " ".join(f"{name} {value:.2f}" for name, value in run.detail["phase_seconds"].items())
            extra = f" engine {run.detail['engine_seconds']:.2f}s [{phases}]"
        elif "transfer_seconds" in run.detail:
            extra = f" [transfer {run.detail['transfer_seconds']:.2f} flag {run.detail['flag_seconds']:.2f}]"
        verdict = "[green]ok[/]" if run.verified else f"[bold red]FAILED {run.detail.get('problems')}[/]"
        self.console.print(
            f"{run.case:<11} {run.method:<12} #{run.repetition} {run.rows:>9,} rows {run.seconds:7.2f}s "
            f"{run.rows_per_second / 1000:8.1f}k rows/s cpu {run.cpu_seconds:6.2f}s "
            f"rss {run.rss_peak / MB:4.0f}MB (+{(run.rss_peak - run.rss_baseline) / MB:.0f}){extra} {verdict}",
            highlight=False,
        )
