"""Takeover: two workers share the mapping, one is killed (SIGKILL) mid-run holding a partition, and fresh workers
run one after another, as a cron would, until every row is synced.

Measured: the time from the kill until the killed worker's partition is carried again (the first `took over the
lease` of that partition, told by the worker that took it, and the first poll of `sync_lease` that sees another
holder), and the time until every row is synced. Two modes:

- `same-host`: the workers are processes of one machine, as here; zonesync takes a lease whose holder died on this
  machine at once, so the takeover waits only for a run to reach the partition.
- `other-hosts`: each worker pretends to be a machine of its own (a bench hook on the lease's host name), so the
  dead worker's lease holds until it expires (`ZONESYNC_LEASE_SECONDS`, renewed every third of it).

Each fresh worker is started and warmed up while the previous one runs (a cron's start-up is not what is
measured), and released the moment the previous one ends. Verified as every run: target equal to source, nothing
unflagged, each row flagged exactly once over all runs (the killed worker's share read from its batch_job row).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any

from bench import scale_data
from bench.scale_pool import Worker, close_stdin, spawn, worker_args
from bench.scale_runs import ScaleBench, job_of

POLL_SECONDS = 0.02
KILL_AT_SHARE = 3  # the victim is killed once a third of the rows are synced (and it holds a partition)


@dataclass
class Cron:
    """Fresh workers one after another: the next one warmed up and waiting while the current one runs."""

    bench: ScaleBench
    args: list[str]
    mode: str
    started: int = 0
    current: Worker | None = None
    standby: Worker | None = None
    finished: list[Worker] = field(default_factory=list)

    def prepare(self) -> None:
        """Start the next worker (it imports and warms up, then waits for go)."""
        self.started += 1
        name = f"takeover-{self.mode}-cron-{self.started}"
        host = ["--host-name", name] if self.mode == "other-hosts" else []
        self.standby = spawn(name, self.args + host, self.bench.environment(), self.bench.logs)

    def fire(self) -> None:
        """Release the waiting worker and start preparing the one after it."""
        assert self.standby is not None
        self.standby.wait_for("ready", 180)
        self.standby.go()
        self.current, self.standby = self.standby, None
        self.prepare()

    def tick(self) -> bool:
        """Whether no run is going on now (the current one, if any, has just reported)."""
        if self.current is not None and self.current.poll("done") is not None:
            self.current.finish()
            self.finished.append(self.current)
            self.current = None
        return self.current is None

    def workers(self) -> list[Worker]:
        """Every worker the cron started."""
        return [w for w in (*self.finished, self.current, self.standby) if w is not None]


@dataclass
class Drill:
    """One takeover measurement."""

    bench: ScaleBench
    mode: str
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # the victim's partition leases at the kill -> its holder

    def run(self) -> dict[str, Any]:
        """Reset, start, kill, take over, converge, verify; the record."""
        bench = self.bench
        scale_data.reset(bench.pair, bench.mapping)
        args = worker_args(bench.mapping.name, bench.config.batch_size("cpu", bench.default_batch_size), 0.0)
        pair = [self._spawn(f"takeover-{self.mode}-{role}", args) for role in ("victim", "survivor")]
        cron = Cron(bench, args, self.mode)
        cron.prepare()
        try:
            for worker in pair:
                worker.wait_for("ready", 180)
            before = scale_data.last_job_id(bench.pair)
            go = time.time()
            for worker in pair:
                worker.go()
            if self._kill_when_due(pair[0], before, go):
                self._converge(cron, pair[1], before)
        finally:
            close_stdin(cron.workers())
            for worker in [*pair, *cron.workers()]:
                worker.finish()
        return self._verified(pair, cron, before)

    def _spawn(self, name: str, args: list[str]) -> Worker:
        host = ["--host-name", name] if self.mode == "other-hosts" else []
        return spawn(name, args + host, self.bench.environment(), self.bench.logs)

    def _kill_when_due(self, victim: Worker, before: int, go: float) -> bool:
        """SIGKILL the victim once a third of the rows are synced, at a moment it holds a partition lease with rows
        left in it (frozen with SIGSTOP while that is read, so that it cannot move on meanwhile); False if never."""
        pid = victim.process.pid
        while victim.poll("done") is None:
            synced = scale_data.synced_after(self.bench.pair, before)
            if synced * KILL_AT_SHARE >= self.bench.config.rows:
                victim.process.send_signal(signal.SIGSTOP)
                leases = scale_data.partition_leases(self.bench.pair, self.bench.mapping)
                self.held = {name: holder for name, holder in leases.items() if f":{pid}:" in holder}
                if self.held and scale_data.pending_in_partitions(self.bench.pair, self.bench.mapping, list(self.held)):
                    victim.kill()
                    self._killed(go, synced)
                    return True
                victim.process.send_signal(signal.SIGCONT)  # between partitions, or its last one done: again
            time.sleep(POLL_SECONDS)
        self.problems.append("the victim finished before it could be killed holding a partition")
        return False

    def _killed(self, go: float, synced: int) -> None:
        self.facts["killed_at"] = time.time()
        self.facts |= {"killed_after_seconds": round(self.facts["killed_at"] - go, 3), "rows_synced_at_kill": synced,
                       "victim_partitions": sorted(self.held),
                       "lease_seconds_left_at_kill": _seconds_left(self.bench, list(self.held)),
                       "rows_left_in_them": scale_data.pending_in_partitions(self.bench.pair, self.bench.mapping,
                                                                            list(self.held))}  # fmt: skip

    def _converge(self, cron: Cron, survivor: Worker, before: int) -> None:
        """Fresh runs back to back until the ledger counts every row; watch the victim's partition leases."""
        cron.fire()
        killed, rows = self.facts["killed_at"], self.bench.config.rows
        limit = killed + 3 * self.bench.config.lease_seconds + 900
        while time.time() < limit:
            if "takeover_polled_seconds" not in self.facts and self._taken_over():
                self.facts["takeover_polled_seconds"] = round(time.time() - killed, 3)
            idle = cron.tick()
            if "converged_seconds" not in self.facts and scale_data.synced_after(self.bench.pair, before) >= rows:
                self.facts["converged_seconds"] = round(time.time() - killed, 3)
            if "converged_seconds" in self.facts:
                if idle and survivor.poll("done") is not None:
                    break
            elif idle:
                cron.fire()
            time.sleep(POLL_SECONDS)
        else:
            self.problems.append("not converged within the time limit")
        self.facts["cron_runs"] = len(cron.finished) + (cron.current is not None)

    def _taken_over(self) -> bool:
        leases = scale_data.partition_leases(self.bench.pair, self.bench.mapping)
        return any(name in leases and leases[name] != holder for name, holder in self.held.items())

    def _verified(self, pair: list[Worker], cron: Cron, before: int) -> dict[str, Any]:
        victim, survivor = pair
        reports = []
        for worker in [survivor, *cron.finished]:
            report = worker.said_all("done")
            if report:
                reports.append(report[-1] | {"job_id": job_of(worker), "name": worker.name})
        takeovers = [event for worker in [survivor, *cron.finished] for event in worker.said_all("takeover")
                     if event["lease"] in self.held]  # fmt: skip
        if takeovers and "killed_at" in self.facts:
            first = min(takeovers, key=lambda event: event["at"])
            self.facts["takeover_seconds"] = round(first["at"] - self.facts["killed_at"], 3)
            self.facts["takeover_why"] = first["why"]
        elif "killed_at" in self.facts:
            self.problems.append("no worker reported taking over the killed worker's partition")
        lost = [job] if (job := job_of(victim)) is not None else []
        jobs = scale_data.jobs_after(self.bench.pair, before)
        check = scale_data.verify_run(self.bench.pair, self.bench.mapping, self.bench.config.rows, reports, jobs, lost)
        problems = self.problems + check.problems
        return {"mode": self.mode, "lease_seconds": self.bench.config.lease_seconds, **self.facts,
                "verified": not problems, "problems": problems, "verification": check.figures,
                "victim_job": jobs.get(lost[0]) if lost else None, "workers_reports": reports}  # fmt: skip


def _seconds_left(bench: ScaleBench, names: list[str]) -> float:
    """How long the victim's partition leases had to run when it was killed (the longest of them)."""
    left_seconds = "max(extract(epoch FROM expires_at - (now() AT TIME ZONE 'UTC')))"
    query = f"SELECT {left_seconds} FROM sync_lease WHERE name = ANY(%s)"
    with bench.pair.connect(bench.pair.source_db) as conn:
        left = conn.execute(query, (names,)).fetchone()[0]  # type: ignore[index]
    return round(float(left or 0.0), 3)


def takeover(bench: ScaleBench, mode: str) -> dict[str, Any]:
    """Run the takeover drill in one mode and print what it found."""
    record = Drill(bench, mode).run()
    verdict = "[green]ok[/]" if record["verified"] else f"[bold red]FAILED {record['problems']}[/]"
    bench.console.print(
        f"takeover {mode:<11} killed after {record.get('killed_after_seconds', 0):.2f}s holding "
        f"{', '.join(record.get('victim_partitions', []))} (lease {record.get('lease_seconds_left_at_kill', 0):.1f}s "
        f"left); taken over after {record.get('takeover_seconds', float('nan')):.2f}s "
        f"({record.get('takeover_why', '?')}), every row synced {record.get('converged_seconds', float('nan')):.2f}s "
        f"after the kill, {record.get('cron_runs', 0)} fresh run(s)  {verdict}",
        highlight=False,
    )
    return record
