"""Every drill, where it applies, and how one trial of it runs (fresh zones → drill → checker).

Pairings name (intranet backend, internet backend). Outage drills need a server as the internet zone (a private
cluster of that backend); the two-phase crash drill needs servers in both zones.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from tests.torture import drills_crash, drills_outage, drills_partitioned, drills_stall
from tests.torture.data import BUSINESS_DATE, push_batches, update_items, valid_keys
from tests.torture.session import Pairing, Session, roll_back_leftovers
from tests.torture.trial import BATCH, Drill, Trial, TrialResult

DEFAULT_PAIRINGS: tuple[Pairing, ...] = (
    ("sqlite", "sqlite"),
    ("postgresql", "postgresql"),
    ("postgresql", "mariadb"),
)


def concurrency(trial: Trial) -> list[str]:
    """Two processes running the scheduled flow twice each, and one pushing and updating, all on one mapping."""
    mapping = trial.rng.choice(["merchants", "payments"])
    baseline = trial.baseline([mapping])
    if mapping == "merchants":
        scheduled = {"op": "retry", "args": {"mappings": ["merchants"], "batch_size": BATCH}}
    else:
        scheduled = {"op": "endday", "args": {"business_date": BUSINESS_DATE.isoformat(), "mappings": ["payments"]}}
    keys = valid_keys(mapping, 60)
    mixed = []
    for batch in push_batches(mapping, 0, 6, trial.rng, per_push=2):
        mixed.append({"op": "push", "args": {"mapping": mapping, "batches": [batch]}})
        items = update_items(mapping, [trial.rng.choice(keys)], trial.rng)
        mixed.append({"op": "update", "args": {"mapping": mapping, "items": items}})
    workers = [trial.start("steps", steps=[scheduled, scheduled])]
    trial.sleep(0.0, 0.4)
    workers.append(trial.start("steps", steps=[scheduled, scheduled]))
    trial.sleep(0.0, 0.4)
    workers.append(trial.start("steps", steps=mixed))
    for worker in workers:
        trial.note(str(trial.wait(worker).get("result"))[:200])
    return trial.finish([mapping], baseline)


@dataclass(frozen=True)
class DrillSpec:
    """A drill and what it needs: data to seed, a private target cluster, servers for two-phase commit."""

    name: str
    run: Callable[..., list[str]]
    merchants: int = 150
    payments: int = 0
    private_target: bool = False  # the internet zone is a private cluster (the drill stops or freezes it)
    server_target: bool = False  # needs a server as the internet zone
    two_phase: bool = False  # needs servers in both zones

    def applies(self, pairing: Pairing) -> bool:
        """Whether the drill means anything on this pairing."""
        if (self.private_target or self.server_target) and pairing[1] == "sqlite":
            return False
        return not (self.two_phase and "sqlite" in pairing)


DRILLS: dict[str, DrillSpec] = {
    spec.name: spec
    for spec in (
        DrillSpec("crash-retry", drills_crash.crash_retry, merchants=250),
        DrillSpec("crash-retry-deletes", drills_crash.crash_retry_deletes, merchants=250),
        DrillSpec("crash-endday", drills_crash.crash_endday, merchants=0, payments=250),
        DrillSpec("crash-push", drills_crash.crash_push, merchants=30, payments=30),
        DrillSpec("crash-update-2pc", drills_crash.crash_update_two_phase, merchants=60, payments=60, two_phase=True),
        DrillSpec("crash-update-intent", drills_crash.crash_update_intent, merchants=60, payments=60),
        DrillSpec("crash-delete-2pc", drills_crash.crash_delete_two_phase, merchants=60, two_phase=True),
        DrillSpec("crash-delete-intent", drills_crash.crash_delete_intent, merchants=60),
        DrillSpec("stall-random", drills_stall.stall_random, merchants=120),
        DrillSpec("stall-push-update", drills_stall.stall_push_update, merchants=10, payments=10),
        DrillSpec("stall-lock-target", drills_stall.stall_lock_target, merchants=40),
        DrillSpec("stall-lock-source", drills_stall.stall_lock_source, merchants=40),
        DrillSpec("stall-recover", drills_stall.stall_recover, merchants=40),
        DrillSpec("concurrency", concurrency, merchants=100, payments=100),
        DrillSpec("partitioned", drills_partitioned.partitioned, merchants=300),
        DrillSpec("outage-stop", drills_outage.outage_stop, merchants=120, private_target=True),
        DrillSpec("outage-freeze", drills_outage.outage_freeze, merchants=120, private_target=True),
        DrillSpec("outage-tarpit", drills_outage.outage_tarpit, merchants=60, server_target=True),
    )
}


def run_trial(session: Session, spec: DrillSpec, pairing: Pairing, seed: int) -> TrialResult:
    """One trial: fresh zones, seeded data, the drill, the checker; harness failures are reported as violations."""
    from tests.torture.data import seed as seed_zones

    started = time.monotonic()
    path = session.trial_dir()
    cluster = None
    try:
        if spec.private_target:
            pair, cluster = session.private_pair(pairing, path)
        else:
            pair = session.pair(pairing, path)
    except Exception as exc:
        return TrialResult(spec.name, pairing, seed, [f"harness error: zones not created: {exc}"], 0.0)
    trial = Trial(session, pairing, seed, pair)
    try:
        seed_zones(pair, spec.merchants, spec.payments)
        violations = spec.run(trial, cluster) if cluster is not None else spec.run(trial)
    except Exception as exc:  # the harness itself failed: report it, loudly, as this trial's finding
        violations = [f"harness error: {type(exc).__name__}: {exc}"]
        trial.note(traceback.format_exc()[-1500:])
    finally:
        trial.reap()
        if cluster is not None:
            cluster.thaw()
            if not cluster.running():
                cluster.start()
        roll_back_leftovers(pair)
        pair.dispose()
    return TrialResult(spec.name, pairing, seed, violations, time.monotonic() - started, trial.notes)


__all__ = ["DEFAULT_PAIRINGS", "DRILLS", "Drill", "DrillSpec", "run_trial"]
