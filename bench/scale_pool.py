"""Worker processes for the scale-out benchmark: start them, wait until each is ready, say go, collect their reports.

Each worker is `python -m bench.scale_worker` (the real `retry_sync` flow in its own process); it speaks JSON lines
on its stdout, read here by one thread per worker, which stamps every line with this process's clock when it
arrives. Its stderr (Prefect's and zonesync's logs) goes to a file in the run's log folder.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.database import DatabasePair

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 180  # eight workers importing at once on two cores take a while
RUN_TIMEOUT_SECONDS = 3600


def worker_environment(pair: DatabasePair, api_url: str, partitions: int, lease_seconds: float) -> dict[str, str]:
    """The environment every worker shares: the zones, the mapping module, the partitions, the Prefect API."""
    return os.environ | {
        "ZONESYNC_MAPPING_MODULES": "bench.scale_mappings",
        "ZONESYNC_BENCH_PARTITIONS": str(partitions),
        "ZONESYNC_INTRANET_URL": pair.url(pair.source_db).render_as_string(hide_password=False),
        "ZONESYNC_INTERNET_URL": pair.url(pair.target_db).render_as_string(hide_password=False),
        "ZONESYNC_LEASE_SECONDS": f"{lease_seconds:g}",
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


@dataclass
class Worker:
    """One worker process and what it has said so far."""

    name: str
    process: subprocess.Popen[str]
    log: Path
    said: queue.Queue[tuple[float, dict[str, Any]]] = field(default_factory=queue.Queue)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    killed_at: float | None = None

    def start_reading(self) -> None:
        """A daemon thread reading the worker's JSON lines as they come."""
        stream = self.process.stdout
        assert stream is not None

        def read() -> None:
            for line in stream:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = {"event": "noise", "line": line.rstrip()}
                self.said.put((time.perf_counter(), message))
            self.said.put((time.perf_counter(), {"event": "exit"}))

        threading.Thread(target=read, name=f"bench-{self.name}", daemon=True).start()

    def wait_for(self, event: str, timeout: float) -> tuple[float, dict[str, Any]]:
        """The first `event` line (every line before it kept); RuntimeError if the worker exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                at, message = self.said.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name}: no '{event}' within {timeout:.0f}s (log: {self.log})") from None
            self.events.append((at, message))
            if message.get("event") == event:
                return at, message
            if message.get("event") == "exit":
                raise RuntimeError(f"{self.name} exited before '{event}' (log: {self.log}): {self.tail()}")

    def go(self) -> None:
        """Let the worker start its measured run."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write("go\n")
        stdin.flush()

    def kill(self) -> float:
        """SIGKILL, then reap it at once: zonesync sees a dead process here only once it is gone (a zombie is
        alive to kill(pid, 0)). Returns when it was killed (perf_counter)."""
        self.process.send_signal(signal.SIGKILL)
        self.killed_at = time.perf_counter()
        self.process.wait()
        return self.killed_at

    def finish(self) -> int:
        """Wait for the process to exit; its exit code."""
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def said_all(self, event: str) -> list[dict[str, Any]]:
        """Every `event` line received so far (draining what is queued)."""
        while not self.said.empty():
            self.events.append(self.said.get_nowait())
        return [message for _, message in self.events if message.get("event") == event]

    def poll(self, event: str) -> dict[str, Any] | None:
        """The `event` line if it has arrived (without waiting); RuntimeError if the worker exited without it."""
        found = self.said_all(event)
        if found:
            return found[-1]
        if self.said_all("exit"):
            raise RuntimeError(f"{self.name} exited before '{event}' (log: {self.log}): {self.tail()}")
        return None

    def tail(self, lines: int = 15) -> str:
        """The end of the worker's log, for an error message."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Worker:
    """Start one worker process (not yet ready: see `Worker.wait_for('ready')`)."""
    log = logs / f"{name}.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.scale_worker", *args], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
    worker = Worker(name, process, log)
    worker.start_reading()
    return worker


def worker_args(mapping: str, batch_size: int, delay_ms: float, host_name: str | None = None) -> list[str]:
    """A worker's command-line options."""
    args = ["--mapping", mapping, "--batch-size", str(batch_size), "--delay-ms", f"{delay_ms:g}"]
    return args + (["--host-name", host_name] if host_name else [])


@dataclass
class Gang:
    """Workers started together, released together: the measured run of one worker count."""

    workers: list[Worker]
    ready: list[dict[str, Any]] = field(default_factory=list)

    def wait_ready(self) -> None:
        """Every worker imported, connected and warmed up."""
        self.ready = [worker.wait_for("ready", READY_TIMEOUT_SECONDS)[1] for worker in self.workers]

    def go(self) -> float:
        """Release them all; the start of the wall time (perf_counter)."""
        started = time.perf_counter()
        for worker in self.workers:
            worker.go()
        return started

    def wait_done(self) -> tuple[float, list[dict[str, Any]]]:
        """When the last worker's report arrived (perf_counter), and every report in worker order."""
        done = [worker.wait_for("done", RUN_TIMEOUT_SECONDS) for worker in self.workers]
        for worker in self.workers:
            worker.finish()
        return max(at for at, _ in done), [message for _, message in done]

    def stop(self) -> None:
        """Make sure no worker outlives its run (a failed one included)."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


def close_stdin(workers: list[Worker]) -> None:
    """Close the workers' stdin (a worker still waiting for go then gives up)."""
    for worker in workers:
        stream: IO[str] | None = worker.process.stdin
        if stream is not None and not stream.closed:
            stream.close()
