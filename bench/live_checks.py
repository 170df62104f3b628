"""Benchmark: what the live-table checks cost the 1M-row retry, measured in one process, runs interleaved.

    .venv/bin/python -m bench.live_checks               # 1M rows, 6 pairs of runs (about 8 minutes)
    .venv/bin/python -m bench.live_checks --pairs 2 --rows 100000

The same retry_sync flow call runs with the checks (the product as it is) and without them (for these runs only,
in this process: no catalog signature read or compared, no live-column check, no schema contract), alternating
in the order on, off, off, on, ... so that a drift of the machine's speed weighs on both alike. Every run starts
from the reset state of `bench.retry_sync` and is verified the same way. Comparing two commits across two
benchmark processes cannot separate a cost of 2 % from the ±5 % spread between processes; this can.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from bench.configs import RetrySyncConfig
from bench.retry_sync import DEFAULT_PG_URL, ROOT, prepare_prefect


@contextmanager
def checks_off() -> Iterator[None]:
    """The live-table checks made no-ops, for the runs measured without them."""
    from zonesync.tasks.dialects.column_shapes import inexact_rows_of
    from zonesync.tasks.dialects.surface import Dialect
    from zonesync.tasks.schema import contract as schema_contract
    from zonesync.tasks.schema.shape import Comparison
    from zonesync.tasks.schema.watch import ShapeWatch

    def nothing(*_args: Any, **_kwargs: Any) -> None:
        return None

    saved = (ShapeWatch.baseline, ShapeWatch.verify, ShapeWatch.check_now, Dialect.inexact_rows,
             schema_contract.enforce)  # fmt: skip
    ShapeWatch.baseline = ShapeWatch.verify = ShapeWatch.check_now = nothing  # type: ignore[method-assign]
    Dialect.inexact_rows = lambda _self, _table, frame, row, *_: inexact_rows_of({}, frame, row)  # type: ignore[method-assign]
    schema_contract.enforce = lambda *_args: Comparison()
    try:
        yield
    finally:
        (ShapeWatch.baseline, ShapeWatch.verify, ShapeWatch.check_now, Dialect.inexact_rows,  # type: ignore[method-assign]
         schema_contract.enforce) = saved  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the interleaved pairs; 0 when every run verified."""
    parser = argparse.ArgumentParser(prog="python -m bench.live_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=6, help="pairs of runs, with and without the checks")
    parser.add_argument("--pg-url", default=os.environ.get("ZONESYNC_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--db-prefix", default="zs_checks")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    config = RetrySyncConfig(args.rows, args.pairs, None, args.pg_url, args.db_prefix, False, True, None)
    with tempfile.TemporaryDirectory(prefix="zs-bench-prefect-") as home:
        prepare_prefect(home)
        return _run(config)


def _run(config: RetrySyncConfig) -> int:
    from prefect.testing.utilities import prefect_test_harness
    from rich.console import Console

    from bench import database
    from bench.mappings import BENCH_PAYMENTS
    from bench.runner import Bench, configure_zonesync
    from zonesync.tasks.zones.engines import dispose_engines

    console = Console(width=200)
    pair = database.database_pair(config.pg_url, config.prefix)
    database.recreate_databases(pair)
    try:
        bench = Bench(pair, config, console)
        bench.setup()
        batch_size = configure_zonesync(pair, None)
        with prefect_test_harness(server_startup_timeout=90):
            bench._warm_up(batch_size)
            for number in range(1, config.repeat + 1):
                order = ("on", "off") if number % 2 else ("off", "on")
                for checks in order:
                    with checks_off() if checks == "off" else nullcontext():
                        bench._full_zonesync(f"checks-{checks}", BENCH_PAYMENTS, number, config.rows, batch_size)
    finally:
        dispose_engines()
        database.drop_databases(pair)
    return _report(console, bench.runs)


def _report(console: Any, runs: list[Any]) -> int:
    engine = {case: [run.detail["engine_seconds"] for run in runs if run.case == case and run.verified]
              for case in ("checks-on", "checks-off")}  # fmt: skip
    for case, seconds in engine.items():
        console.print(f"{case}: engine s {', '.join(f'{s:.2f}' for s in seconds)}")
        phases = [run.detail["phase_seconds"] for run in runs if run.case == case and run.verified]
        if phases:
            means = {name: statistics.fmean(p.get(name, 0.0) for p in phases) for name in phases[0]}
            console.print(f"{case}: mean phase s " + ", ".join(f"{n} {v:.2f}" for n, v in means.items()))
        cpu = [run.cpu_seconds for run in runs if run.case == case and run.verified]
        console.print(f"{case}: process CPU s {', '.join(f'{c:.2f}' for c in cpu)}")
    if all(engine.values()):
        on, off = engine["checks-on"], engine["checks-off"]
        console.print(
            f"median on/off {statistics.median(on):.3f}/{statistics.median(off):.3f} s "
            f"({statistics.median(on) / statistics.median(off) - 1:+.1%}); "
            f"mean {statistics.fmean(on):.3f}/{statistics.fmean(off):.3f} s "
            f"({statistics.fmean(on) / statistics.fmean(off) - 1:+.1%})"
        )
    return 0 if all(run.verified for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
