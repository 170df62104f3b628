"""One scale-out worker: the real `retry_sync` flow in its own process, started by `bench.scale_out`.

    python -m bench.scale_worker --mapping bench_payments_scaled --batch-size 20000 [--delay-ms 5]

Everything it needs comes from its environment (the zones' URLs, the mapping module, the partition count, the
lease time, the Prefect API of the benchmark's server). It imports, connects and warms up (one call of the flow on
an empty mapping), says `ready` and waits for a `go` line on stdin; only then does it run the flow on the measured
mapping. It speaks JSON lines on its stdout (ready, job, takeover, done) and sends everything else, Prefect's
and zonesync's logs included, to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench.scale_hooks import Delay, Retries, announce_jobs_and_takeovers, pretend_host

_STATUS = Path("/proc/self/status")


def peak_rss_kib() -> int:
    """This process's peak resident set size (VmHWM), in KiB."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Channel:
    """The JSON lines to the parent, on a copy of the original stdout (fd 1 itself then goes to stderr)."""

    def __init__(self) -> None:
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # a print or a log handler on stdout can no longer break the protocol

    def emit(self, message: dict[str, Any]) -> None:
        """One line to the parent, at once."""
        self._out.write(json.dumps(message, default=str) + "\n")
        self._out.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (set by the parent)."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale_worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mapping", required=True, help="the measured mapping")
    parser.add_argument("--warm-up-mapping", default="bench_payments_warm_up", help="an empty mapping to warm up on")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="sleep before every round trip (0: none)")
    parser.add_argument("--host-name", default=None, help="pretend to be this machine (leases look foreign)")
    return parser.parse_args(argv)


def warm_up(warm_up_mapping: str, batch_size: int) -> dict[str, Any]:
    """Untimed: the flow once on a mapping with nothing to sync, a connection to each zone, a connectorx read."""
    import sqlalchemy as sa

    from zonesync.flows.retry_sync import retry_sync
    from zonesync.tasks.zones.engines import dialect_for, get_engine

    started = time.perf_counter()
    report = retry_sync(mappings=[warm_up_mapping], batch_size=batch_size)
    for zone in ("intranet", "internet"):
        with get_engine(zone).connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    dialect_for(get_engine("intranet")).read_frame(sa.select(sa.literal(1).label("one")), {})
    return {"warm_up_seconds": round(time.perf_counter() - started, 3), "warm_up_status": report.mappings[0].status}


def run(mapping: str, batch_size: int) -> dict[str, Any]:
    """The measured flow call; its mapping's counts (or the error it raised)."""
    from zonesync.flows.retry_sync import retry_sync

    try:
        result = retry_sync(mappings=[mapping], batch_size=batch_size)[mapping]
    except Exception as exc:  # reported to the parent, which fails the run's verification
        return {"status": "raised", "message": f"{type(exc).__name__}: {exc}"}
    return {
        "status": result.status, "message": result.message, "read": result.read, "upserted": result.upserted,
        "flagged": result.flagged, "quarantined": result.quarantined, "changed_in_flight": result.changed_in_flight,
        "batches": result.batches, "engine_seconds": round(result.seconds, 4),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Warm up, say ready, wait for go, run, report; 0 unless the flow raised."""
    args = parse_args(argv)
    channel = Channel()
    if args.host_name:
        pretend_host(args.host_name)
    delay, retries = Delay(args.delay_ms / 1000), Retries()
    if args.delay_ms > 0:
        delay.install()
    retries.install()
    announce_jobs_and_takeovers(channel.emit)
    facts = warm_up(args.warm_up_mapping, args.batch_size)
    channel.emit({"event": "ready", "pid": os.getpid(), "peak_rss_kib_after_warm_up": peak_rss_kib(), **facts})
    if sys.stdin.readline().strip() != "go":
        return 2  # the parent gave up on this run
    delay.reset()
    retries.reset()
    started, cpu = time.time(), time.process_time()
    outcome = run(args.mapping, args.batch_size)
    ended = time.time()
    channel.emit({"event": "done", "pid": os.getpid(), "started_at": started, "ended_at": ended,
                  "cpu_seconds": round(time.process_time() - cpu, 3), "peak_rss_kib": peak_rss_kib(),
                  "retries": dict(retries.counts), "delay": delay.facts(), **outcome})  # fmt: skip
    return 1 if outcome["status"] == "raised" else 0


if __name__ == "__main__":
    raise SystemExit(main())
