"""What a scale-out worker adds to zonesync in its own process (bench hooks, never project code).

- `Delay`: a fixed sleep before every round trip to a database, standing for a cross-zone network of a few
  milliseconds: every statement (SQLAlchemy's `before_cursor_execute`, on the `Engine` class so every engine has
  it), every COMMIT (its own round trip), every COPY (zonesync sends it through the driver's cursor, below
  SQLAlchemy's events) and every connectorx read (`connectorx.read_sql`, which zonesync calls as `cx.read_sql`).
  It counts them and measures how much of the wall time at least one thread was asleep in it.
- `Retries`: the transient-error retries, counted where zonesync decides them: `retry_delay` (a deadlock or a dead
  connection, run again by the transaction) and the `sync-mapping` task's `retry_condition_fn` (Prefect's retries).
- `announce_jobs_and_takeovers`: the worker's `batch_job` row id and every lease it takes over, told to the parent
  as they happen.
- `pretend_host`: a host name of the worker's own, so that a dead worker's leases look like another machine's
  (zonesync takes a lease of a process that died on this machine at once; one of another machine only expires).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

Emit = Callable[[dict[str, Any]], None]


class Delay:
    """Sleeps `seconds` before each round trip; counts them and the wall time covered by at least one sleep."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.counts: Counter[str] = Counter()
        self.slept = 0.0  # summed over threads (the pipeline's read, claim and deliver threads overlap)
        self.covered = 0.0  # the union: wall time during which some thread slept here
        self._lock = threading.Lock()
        self._sleeping = 0
        self._since = 0.0

    def reset(self) -> None:
        """Forget the warm-up's round trips (called at "go")."""
        with self._lock:
            self.counts.clear()
            self.slept = self.covered = 0.0

    def pause(self, kind: str) -> None:
        """One round trip of `kind` (statement, commit, copy, connectorx)."""
        started = time.perf_counter()
        with self._lock:
            self.counts[kind] += 1
            if self._sleeping == 0:
                self._since = started
            self._sleeping += 1
        time.sleep(self.seconds)
        ended = time.perf_counter()
        with self._lock:
            self.slept += ended - started
            self._sleeping -= 1
            if self._sleeping == 0:
                self.covered += ended - self._since

    def install(self) -> None:
        """Hook every SQLAlchemy engine, zonesync's COPY and its connectorx reads in this process."""
        import connectorx
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        from zonesync.tasks.dialects.postgresql import PostgresDialect

        event.listen(Engine, "before_cursor_execute", lambda *_: self.pause("statement"))
        event.listen(Engine, "commit", lambda *_: self.pause("commit"))
        read_sql, bulk_load = connectorx.read_sql, PostgresDialect.bulk_load

        def delayed_read(*args: Any, **kwargs: Any) -> Any:
            self.pause("connectorx")
            return read_sql(*args, **kwargs)

        def delayed_copy(dialect: PostgresDialect, *args: Any, **kwargs: Any) -> None:
            self.pause("copy")
            bulk_load(dialect, *args, **kwargs)

        connectorx.read_sql = delayed_read
        PostgresDialect.bulk_load = delayed_copy  # type: ignore[method-assign, assignment]

    def facts(self) -> dict[str, Any]:
        """What the run's delays added up to."""
        return {"round_trips": dict(self.counts), "slept_seconds": round(self.slept, 3),
                "covered_seconds": round(self.covered, 3)}  # fmt: skip


class Retries:
    """Transient-error retries decided in this process, by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the warm-up's (called at "go")."""
        with self._lock:
            self.counts.clear()

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def install(self) -> None:
        """Wrap `retry_delay` where zonesync calls it, and the sync task's Prefect retry condition."""
        from zonesync.tasks import prefect_tasks
        from zonesync.tasks.sync import batch
        from zonesync.tasks.zones import engines, failures, retrying

        def counted_delay(exc: BaseException, attempt: int) -> float | None:
            delay = retrying.retry_delay(exc, attempt)
            if delay is not None:
                self._count("deadlock" if failures.is_deadlock(exc) else "dead_connection")
            return delay

        engines.retry_delay = counted_delay
        batch.retry_delay = counted_delay
        condition = prefect_tasks.sync_mapping.retry_condition_fn

        def counted_condition(task: Any, task_run: Any, state: Any) -> bool:
            again = bool(condition(task, task_run, state)) if condition is not None else False
            if again:
                self._count("prefect_task")
            return again

        prefect_tasks.sync_mapping.retry_condition_fn = counted_condition


def announce_jobs_and_takeovers(emit: Emit) -> None:
    """Tell the parent the id of the worker's `batch_job` row, and each lease it takes over, when it happens."""
    from zonesync.tasks.bookkeeping import ledger
    from zonesync.tasks.bookkeeping.lease import Takeover

    start_job, announce = ledger.start_job, Takeover.announce

    def announced_start(*args: Any, **kwargs: Any) -> Any:
        entry, lease = start_job(*args, **kwargs)
        emit({"event": "job", "id": entry.id, "at": time.time()})
        return entry, lease

    def announced_takeover(takeover: Takeover) -> None:
        emit({"event": "takeover", "lease": takeover.lease, "why": takeover.why, "at": time.time(),
              "previous_holder": takeover.previous_holder})  # fmt: skip
        announce(takeover)

    ledger.start_job = announced_start
    Takeover.announce = announced_takeover  # type: ignore[method-assign, assignment]


def pretend_host(name: str) -> None:
    """Lease holders of this process name `name` as their host, and only `name` counts as this machine."""
    from zonesync.tasks.bookkeeping import lease

    lease.socket = SimpleNamespace(gethostname=lambda: name)  # type: ignore[assignment]
