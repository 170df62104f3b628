"""One trial of a drill: fresh zones, seeded randomness, workers, then recover + a final clean run + the checker."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import ZonePair
from tests.torture import checker
from tests.torture.data import BUSINESS_DATE
from tests.torture.procs import Event, Worker, WorkerError
from tests.torture.session import Pairing, Session
from zonesync.schemas.examples import MERCHANTS, PAYMENTS

MAPPINGS = {"merchants": MERCHANTS, "payments": PAYMENTS}
BATCH = 10  # small batches: a run has many steps a kill or a stop can fall between
KNOBS = (
    "TORTURE_PAUSE_AT",
    "TORTURE_LEASE_SECONDS",
    "TORTURE_UPDATE_LEASE_SECONDS",
    "ZONESYNC_TWO_PHASE",
    "ZONESYNC_LEASE_SECONDS",
    "ZONESYNC_WORKERS",
)


@dataclass
class TrialResult:
    """What one trial found."""

    drill: str
    pairing: Pairing
    seed: int
    violations: list[str]
    seconds: float
    notes: list[str] = field(default_factory=list)


class Trial:
    """The context a drill works in: its zones, its random numbers, and the workers it started."""

    def __init__(self, session: Session, pairing: Pairing, seed: int, pair: ZonePair) -> None:
        self.session, self.pairing, self.pair = session, pairing, pair
        self.rng = random.Random(seed)
        self.notes: list[str] = []
        self._workers: list[Worker] = []

    # -- workers ------------------------------------------------------------------------------------------
    def env(self, **extra: str | None) -> dict[str, str | None]:
        """A command's environment: this trial's zones and the demo mappings; torture knobs off unless given."""
        base: dict[str, str | None] = {
            "ZONESYNC_INTRANET_URL": self.pair.intranet_url,
            "ZONESYNC_INTERNET_URL": self.pair.internet_url,
            "ZONESYNC_MAPPING_MODULES": "zonesync.schemas.examples",
            "ZONESYNC_BATCH_SIZE": str(BATCH),  # the end-day check reads it
            "TORTURE_FAST_RETRIES": "1" if self.session.limits.fast_retries else None,
            **dict.fromkeys(KNOBS),
        }
        return base | extra

    def start(self, op: str, knobs: dict[str, str] | None = None, **args: Any) -> Worker:
        """A warm worker running `op` (not waited for)."""
        worker = self.session.pool.take()
        self._workers.append(worker)
        worker.start(op, self.env(**(knobs or {})), **args)
        return worker

    def wait(self, worker: Worker, timeout: float | None = None) -> Event:
        """The answer of a worker's command; the worker goes back to the pool (or is killed if it hung)."""
        try:
            event = worker.result(timeout or self.session.limits.command_timeout)
        except WorkerError as hung:
            self.note(str(hung))
            worker.kill()
            return {"event": "hung", "error": str(hung)}
        self.session.pool.give_back(worker)
        return event

    def run(self, op: str, knobs: dict[str, str] | None = None, **args: Any) -> Event:
        """Run `op` in a worker to its end."""
        return self.wait(self.start(op, knobs, **args))

    def kill(self, worker: Worker) -> bool:
        """SIGKILL a worker; True if it was still working (the kill interrupted it)."""
        interrupted = worker.alive() and worker.events.empty()
        worker.kill()
        return interrupted

    def stall(self, worker: Worker, seconds: float) -> None:
        """SIGSTOP a worker for a while, then SIGCONT it."""
        worker.signal(signal.SIGSTOP)
        time.sleep(seconds)
        worker.signal(signal.SIGCONT)

    def note(self, text: str) -> None:
        """Something worth reporting that is not a violation."""
        self.notes.append(text)

    def sleep(self, low: float, high: float) -> float:
        """Sleep a seeded random time; return it."""
        pause = self.rng.uniform(low, high)
        time.sleep(pause)
        return pause

    # -- the end of every drill ---------------------------------------------------------------------------
    def sync_now(self, names: Sequence[str], knobs: dict[str, str] | None = None) -> list[str]:
        """One clean run of each named mapping's scheduled flow; a failure to run is a violation."""
        found = []
        for name in names:
            if name == "merchants":
                event = self.run("retry", knobs, mappings=["merchants"], batch_size=BATCH)
            else:
                event = self.run("endday", business_date=BUSINESS_DATE.isoformat(), mappings=["payments"])
            if event["event"] != "done":
                found.append(f"clean {name} run did not complete: {event.get('error', event['event'])}")
        return found

    def finish(
        self,
        names: Sequence[str],
        baseline: checker.Baseline,
        *,
        jobs_only: bool = False,
        knobs: dict[str, str] | None = None,
    ) -> list[str]:
        """Recover, one final clean run (with the drill's `knobs`: its mappings as it declared them), then the
        checker (after recover, then after the final run)."""
        self.reap()
        found = []
        recovered = self.run("recover")
        if recovered["event"] != "done":
            found.append(f"recover failed: {recovered.get('error', recovered['event'])}")
        mappings = [MAPPINGS[name] for name in names]
        found += [f"after recover: {line}" for line in checker.check_leftovers(self.pair) if "sync_lease" not in line]
        found += self.sync_now(names, knobs)
        return found + checker.check(self.pair, mappings, baseline, jobs_only=jobs_only)

    def baseline(self, names: Sequence[str]) -> checker.Baseline:
        """The checker's snapshot before the drill's work starts."""
        return checker.take_baseline(self.pair, [MAPPINGS[name] for name in names])

    def reap(self) -> None:
        """Kill every worker of this trial still working (a drill must not leak processes into the next)."""
        for worker in self._workers:
            if worker.busy and worker.alive():
                worker.signal(signal.SIGCONT)
                self.note(f"worker {worker.pid} still busy at the end of the drill: killed")
                worker.kill()
        self._workers = [w for w in self._workers if w.alive()]


Drill = Callable[[Trial], list[str]]
