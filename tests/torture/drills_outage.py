"""Outage drills: the target zone stopped and restarted, frozen and thawed, or a tarpit that never answers.

The stopped or frozen target is a private cluster of the session (never the shared servers). A run must end
while its target is gone — with an error, not a hang — within the session's hang bound; after the target is
back and a clean run, the checker must pass.
"""

from __future__ import annotations

import time

from tests.torture.clusters import PrivateCluster
from tests.torture.data import push_batches
from tests.torture.procs import Worker
from tests.torture.trial import BATCH, Trial


def outage_stop(trial: Trial, cluster: PrivateCluster) -> list[str]:
    """Stop the target server (crash-like) mid-run, start it again a few seconds later."""

    def event() -> None:
        cluster.stop()
        down = trial.sleep(1.0, 4.0)
        cluster.start()
        trial.note(f"target down for {down:.1f} s")

    return _during_runs(trial, event)


def outage_freeze(trial: Trial, cluster: PrivateCluster) -> list[str]:
    """Freeze the target server (SIGSTOP) mid-run; thaw it when the runs have ended or the hang bound passed
    (the bounded run thaws it after a few seconds instead: the runs must go on once it answers again)."""
    frozen: list[float] = []
    short = trial.session.limits.freeze_seconds

    def event() -> None:
        cluster.freeze()
        frozen.append(time.monotonic())
        if short is not None:
            time.sleep(trial.rng.uniform(min(3.0, short), short))
            _thaw(trial, cluster, frozen)

    try:
        return _during_runs(trial, event, on_ended=lambda: _thaw(trial, cluster, frozen))
    finally:
        cluster.thaw()


def _thaw(trial: Trial, cluster: PrivateCluster, frozen: list[float]) -> None:
    cluster.thaw()
    if frozen:
        trial.note(f"target frozen for {time.monotonic() - frozen[0]:.1f} s")
        frozen.clear()


def outage_tarpit(trial: Trial) -> list[str]:
    """The target URL leads to a tarpit (accepts, never answers); afterwards the real target is back."""
    tarpit = trial.session.tarpit()
    try:
        return _during_runs(trial, lambda: None, internet_url=tarpit.url(trial.pairing[1]))
    finally:
        tarpit.close()


def _during_runs(trial: Trial, event: object, *, internet_url: str | None = None, on_ended: object = None) -> list[str]:
    """A retry sync and a few pushes of merchants (target: the internet zone); `event` hits the target at a
    seeded moment; both must end within the hang bound. Then recover, a clean run, the checker."""
    assert callable(event)
    baseline = trial.baseline(["merchants"])
    knobs = {"ZONESYNC_INTERNET_URL": internet_url} if internet_url else {}
    bound = trial.session.limits.hang_bound
    started = time.monotonic()
    workers = {
        "retry sync": trial.start("retry", knobs, mappings=["merchants"], batch_size=BATCH),
        "pushes": trial.start(
            "push", knobs, mapping="merchants", batches=push_batches("merchants", 0, 3, trial.rng), pause=0.2
        ),
    }
    trial.sleep(0.3, 1.5)
    event()
    found = [_bounded(trial, name, worker, started + bound, bound) for name, worker in workers.items()]
    if callable(on_ended):
        on_ended()
    return [line for line in found if line] + trial.finish(["merchants"], baseline)


def _bounded(trial: Trial, name: str, worker: Worker, deadline: float, bound: float) -> str:
    """Wait for a run until the deadline; a violation line if it hung (it is killed then)."""
    event = trial.wait(worker, timeout=max(1.0, deadline - time.monotonic()))
    if event["event"] == "hung":
        return f"{name} still running {bound:.0f} s after it started (hung on the lost target)"
    trial.note(
        f"{name} ended after {event.get('seconds', 0):.1f} s: {str(event.get('result', event.get('error')))[:160]}"
    )
    return ""
