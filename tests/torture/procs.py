"""Worker processes the drills drive (spawned warm, one command at a time) and the session's Prefect server.

A worker imports zonesync once (about 2.5 s on this machine), then runs JSON commands read from its stdin
and answers on a pipe of its own (Prefect logs its own lines to stdout/stderr, which go to a log file).
Drills kill, stop and continue workers by the pid they spawned, never by name. Workers and the server die with
the process that started them, and the server's home goes with it (tests/processes.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.processes import owned_temp_dir, popen_owned

ROOT = Path(__file__).absolute().parents[2]  # not resolved: a checkout may link this package in
Event = dict[str, Any]


class WorkerError(Exception):
    """A worker did not answer as expected (died, timed out, or the command failed to run)."""


class Worker:
    """One warm worker process: `start` a command, then `wait` for its answer (or kill/stop it meanwhile)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        read_fd, write_fd = os.pipe()
        log = open(log_dir / f"worker-{time.monotonic_ns()}.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = popen_owned(
            [sys.executable, "-m", "tests.torture.worker", str(write_fd)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,),
        )  # fmt: skip
        log.close()
        os.close(write_fd)
        self.events: queue.Queue[Event] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()
        self.busy = False

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "r", encoding="utf-8") as stream:
            for line in stream:
                self.events.put(json.loads(line))
        self.events.put({"event": "exit"})

    def next_event(self, timeout: float) -> Event:
        """The next event the worker reports (ready, paused, locked, done, error); `exit` when it died."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise WorkerError(f"worker {self.pid}: nothing reported within {timeout:.0f} s") from None

    def wait_for(self, *kinds: str, timeout: float) -> Event:
        """Skip events until one of `kinds` (or the worker's exit, or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.01, deadline - time.monotonic()))
            if event["event"] in (*kinds, "exit"):
                return event

    def start(self, op: str, env: dict[str, str | None] | None = None, **args: Any) -> None:
        """Send one command; the answer is a `done` (or `error`) event."""
        assert self.proc.stdin is not None
        self.busy = True
        self.proc.stdin.write((json.dumps({"op": op, "env": env or {}, "args": args}) + "\n").encode())
        self.proc.stdin.flush()

    def result(self, timeout: float) -> Event:
        """Wait for the running command's answer."""
        event = self.wait_for("done", "error", timeout=timeout)
        self.busy = event["event"] == "exit"
        return event

    def run(self, op: str, timeout: float, env: dict[str, str | None] | None = None, **args: Any) -> Event:
        """Run one command to its end."""
        self.start(op, env, **args)
        return self.result(timeout)

    def signal(self, signum: int) -> None:
        """Send a signal to this worker (only to the process we spawned)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL the worker (a stopped worker is continued so that it can die) and reap it."""
        self.signal(signal.SIGKILL)
        self.signal(signal.SIGCONT)
        self.proc.wait(timeout=30)
        self.busy = True  # never reused

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None


class WorkerPool:
    """Warm workers, spawned ahead of need so their import time overlaps with other work."""

    def __init__(self, env: dict[str, str], log_dir: Path, warm: int = 2) -> None:
        self.env, self.log_dir, self.warm = env, log_dir, warm
        self._idle: list[Worker] = []
        self._all: list[Worker] = []
        self.refill()

    def refill(self) -> None:
        """Spawn workers until `warm` are idle or warming up."""
        while len(self._idle) < self.warm:
            worker = Worker(self.env, self.log_dir)
            self._all.append(worker)
            self._idle.append(worker)

    def take(self, timeout: float = 60) -> Worker:
        """A ready worker (waits for its import to finish; one that died meanwhile is replaced once)."""
        for _attempt in range(2):
            worker = self._idle.pop(0) if self._idle else Worker(self.env, self.log_dir)
            if worker not in self._all:
                self._all.append(worker)
            if worker.wait_for("ready", timeout=timeout)["event"] == "ready":
                self.refill()
                return worker
        raise WorkerError(f"workers die while starting (see the logs in {self.log_dir})")

    def give_back(self, worker: Worker) -> None:
        """Return a worker whose last command ended normally; any other is killed."""
        if worker.alive() and not worker.busy:
            worker.events.put({"event": "ready"})  # it is ready again: `take` waits for this
            self._idle.append(worker)
        else:
            worker.kill()

    def close(self) -> None:
        """Kill every worker this pool spawned."""
        for worker in self._all:
            if worker.alive():
                worker.kill()
        self._all.clear()
        self._idle.clear()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `check()` until true; WorkerError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise WorkerError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


class PrefectServer:
    """One `prefect server start` for a whole torture session (each flow process would start its own)."""

    def __init__(self) -> None:
        self.home = owned_temp_dir("torture-prefect-")
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        env = os.environ | {"PREFECT_HOME": self.home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        log = open(Path(self.home) / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = popen_owned(  # the server itself: `prefect server start` runs uvicorn in process, no children
            [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()

    def wait_ready(self, timeout: float = 120) -> None:
        """Block until the API answers its health check."""
        wait_until(self._healthy, timeout, f"prefect server (log in {self.home})", interval=0.5)

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise WorkerError(f"prefect server exited (log in {self.home}/server.log)")
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def worker_env(self) -> dict[str, str]:
        """Environment for worker processes: this server, offline analytics, quiet logs."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": self.home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }

    def stop(self) -> None:
        """Stop the server (its process group: the server we started and the children it started)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def close(self, keep_log_in: Path | None = None) -> None:
        """Stop the server and remove its home; its log is copied into `keep_log_in` first, when given."""
        self.stop()
        if keep_log_in is not None:
            with contextlib.suppress(OSError):
                shutil.copyfile(Path(self.home) / "server.log", keep_log_in / "prefect-server.log")
        shutil.rmtree(self.home, ignore_errors=True)
