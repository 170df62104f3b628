"""Measuring helpers: resident memory sampled in the background, and timed run records."""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

_STATUS = Path("/proc/self/status")
MB = 1024 * 1024


def current_rss() -> int:
    """Resident set size of this process now, in bytes (VmRSS)."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def max_rss() -> int:
    """Peak resident set size of this process so far, in bytes (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Samples VmRSS every `interval` seconds while the block runs: baseline, peak and growth."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = current_rss()
        self._thread.start()
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())

    @property
    def growth(self) -> int:
        """How far the peak rose above the level at the start of the block."""
        return self.peak - self.baseline


@dataclass
class Run:
    """One timed run of one method on one case."""

    case: str  # full | incremental | scaling
    method: str  # floor-copy | floor-upsert | zonesync
    repetition: int
    rows: int
    seconds: float
    cpu_seconds: float
    rss_baseline: int
    rss_peak: int
    load_average: float
    verified: bool
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        """Throughput of the run."""
        return self.rows / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {
            "case": self.case, "method": self.method, "repetition": self.repetition, "rows": self.rows,
            "seconds": round(self.seconds, 4), "rows_per_second": round(self.rows_per_second, 1),
            "cpu_seconds": round(self.cpu_seconds, 3), "rss_baseline_mb": round(self.rss_baseline / MB, 1),
            "rss_peak_mb": round(self.rss_peak / MB, 1),
            "rss_growth_mb": round((self.rss_peak - self.rss_baseline) / MB, 1),
            "load_average_1m": round(self.load_average, 2), "verified": self.verified, **self.detail,
        }  # fmt: skip


class Stopwatch:
    """Wall and process CPU time of a block, plus its RSS samples and the machine's load when it started."""

    def __enter__(self) -> Stopwatch:
        self.load_average = os.getloadavg()[0]
        self.rss = RssSampler().__enter__()
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._wall
        self.cpu_seconds = time.process_time() - self._cpu
        self.rss.__exit__(*exc)


def median(values: Iterable[float]) -> float:
    """Median of some values (0 when there are none)."""
    values = list(values)
    return statistics.median(values) if values else 0.0


PHASES = ("read", "transform", "upsert", "flag", "quarantine", "deletes")  # tasks/sync/run.py's phases


class PhaseTimer:
    """Seconds spent in each step of the syncs it is the phase hook of (`tasks.sync.PHASE_HOOK`)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started
