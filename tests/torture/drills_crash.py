"""Crash drills: SIGKILL a worker at a seeded random moment of a retry, an end-day check, pushes or updates."""

from __future__ import annotations

import time

import sqlalchemy as sa

from tests.torture.checker import Baseline
from tests.torture.data import BUSINESS_DATE, push_batches, update_items, valid_keys
from tests.torture.procs import Worker
from tests.torture.trial import BATCH, Trial
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.bookkeeping.tables import batch_job
from zonesync.tasks.setup.triggers import install_delete_capture


def crash_retry(trial: Trial) -> list[str]:
    """Kill a retry sync mid-run; recover, run again, check (only jobs flag rows: the ledger must add up)."""
    baseline = trial.baseline(["merchants"])
    worker = trial.start("retry", mappings=["merchants"], batch_size=BATCH)
    _kill_while_running(trial, worker, baseline)
    return trial.finish(["merchants"], baseline, jobs_only=True)


def crash_retry_deletes(trial: Trial) -> list[str]:
    """Synced merchants, the delete capture installed, a seeded fifth of them deleted by the application; kill the
    retry that carries the deletes mid-run; recover, run again, check (no delete left pending, none in the target)."""
    trial.run("retry", mappings=["merchants"], batch_size=BATCH)
    install_delete_capture(MERCHANTS, trial.pair.intranet)
    gone = trial.rng.sample(range(1, 251), 50)
    with trial.pair.intranet.begin() as conn:
        conn.execute(sa.text("DELETE FROM merchant WHERE merchant_id IN :gone").bindparams(
            sa.bindparam("gone", expanding=True)), {"gone": gone})  # fmt: skip
    baseline = trial.baseline(["merchants"])
    worker = trial.start("retry", mappings=["merchants"], batch_size=7)
    _kill_while_running(trial, worker, baseline)
    return trial.finish(["merchants"], baseline, jobs_only=True)


def crash_endday(trial: Trial) -> list[str]:
    """Kill an end-day check mid-run; recover, run again, check (the ledger too)."""
    baseline = trial.baseline(["payments"])
    worker = trial.start("endday", business_date=BUSINESS_DATE.isoformat(), mappings=["payments"])
    _kill_while_running(trial, worker, baseline)
    return trial.finish(["payments"], baseline, jobs_only=True)


def crash_push(trial: Trial) -> list[str]:
    """Kill a process pushing records (merchants or payments, seeded) between any two of its statements."""
    mapping = trial.rng.choice(["merchants", "payments"])
    baseline = trial.baseline([mapping])
    batches = push_batches(mapping, 0, 150, trial.rng, per_push=2)
    worker = trial.start("push", mapping=mapping, batches=batches)
    _kill_at_random(trial, worker, 0.05, 1.0)
    return trial.finish([mapping], baseline)


def crash_update_two_phase(trial: Trial) -> list[str]:
    """Kill a process updating rows with two-phase commit (both zones on servers)."""
    return _crash_update(trial, two_phase=True)


def crash_update_intent(trial: Trial) -> list[str]:
    """Kill a process updating rows through the durable intent (ZONESYNC_TWO_PHASE=false, and SQLite)."""
    return _crash_update(trial, two_phase=False)


def _crash_update(trial: Trial, *, two_phase: bool) -> list[str]:
    mapping = trial.rng.choice(["merchants", "payments"])
    baseline = trial.baseline([mapping])
    keys = [trial.rng.choice(valid_keys(mapping, 60)) for _ in range(60)]
    knobs = {"ZONESYNC_TWO_PHASE": "true" if two_phase else "false"}
    worker = trial.start("update", knobs, mapping=mapping, items=update_items(mapping, keys, trial.rng))
    _kill_at_random(trial, worker, 0.05, 1.0)
    return trial.finish([mapping], baseline)


def crash_delete_two_phase(trial: Trial) -> list[str]:
    """Kill a process deleting merchants with two-phase commit (both zones on servers)."""
    return _crash_delete(trial, two_phase=True)


def crash_delete_intent(trial: Trial) -> list[str]:
    """Kill a process deleting merchants through the durable intent (ZONESYNC_TWO_PHASE=false, and SQLite)."""
    return _crash_delete(trial, two_phase=False)


def _crash_delete(trial: Trial, *, two_phase: bool) -> list[str]:
    """Synced merchants, the delete capture installed; deletes with rollback of seeded keys (the demo's merchants
    are archived), killed at a seeded moment; then recover and a final run: each row in both zones or in neither,
    no delete left pending, no archived copy of a row still alive."""
    trial.run("retry", mappings=["merchants"], batch_size=BATCH)
    install_delete_capture(MERCHANTS, trial.pair.intranet)
    baseline = trial.baseline(["merchants"])
    keys = trial.rng.sample(valid_keys("merchants", 60), 20)
    knobs = {"ZONESYNC_TWO_PHASE": "true" if two_phase else "false"}
    worker = trial.start("delete", knobs, mapping="merchants", keys=[{"merchant_id": key} for key in keys])
    _kill_at_random(trial, worker, 0.05, 1.0)
    return trial.finish(["merchants"], baseline)


def _kill_while_running(trial: Trial, worker: Worker, baseline: Baseline) -> None:
    """Kill a scheduled job at a seeded moment after its batch_job row appeared (its work is under way then)."""
    deadline = time.monotonic() + 60
    while not _job_started(trial, baseline) and worker.events.empty() and time.monotonic() < deadline:
        time.sleep(0.02)
    _kill_at_random(trial, worker, 0.0, 1.2)


def _job_started(trial: Trial, baseline: Baseline) -> bool:
    with trial.pair.intranet.connect() as conn:
        return bool(conn.execute(sa.select(sa.func.count()).where(batch_job.c.id > baseline.last_job_id)).scalar())


def _kill_at_random(trial: Trial, worker: Worker, low: float, high: float) -> None:
    after = trial.sleep(low, high)
    if trial.kill(worker):
        trial.note(f"killed after {after:.2f} s")
    else:
        trial.note(f"the command had ended before the kill at {after:.2f} s")
