"""Stall drills: a worker frozen (SIGSTOP) while others go on, and row locks held longer than a lease.

Leases are shortened in the workers (TORTURE_LEASE_SECONDS / TORTURE_UPDATE_LEASE_SECONDS) so that "longer
than the lease" takes seconds, not minutes. Three stories are driven to their exact moment with a pause point
(the worker stops itself there): a push between its source insert and its target write, a retry batch held by
a target row lock past its lease, and `recover` running while an update is still in flight.
"""

from __future__ import annotations

import signal
from decimal import Decimal
from typing import Any

from tests.torture import checker
from tests.torture.data import TABLE, app_items, changed_values, push_batches, update_items, valid_keys
from tests.torture.procs import Worker, WorkerError
from tests.torture.trial import BATCH, MAPPINGS, Trial

SHORT_LEASE = "2"  # seconds
PAUSE_TIMEOUT = 60.0
GRACE = 3.0  # seconds an operation gets while another worker is stopped, before that one is continued


def stall_random(trial: Trial) -> list[str]:
    """Retries, an application writer, pushes and updates at once; one of them frozen for longer than a lease."""
    baseline = trial.baseline(["merchants"])
    knobs = {"TORTURE_LEASE_SECONDS": SHORT_LEASE, "TORTURE_UPDATE_LEASE_SECONDS": SHORT_LEASE}
    retry: dict[str, Any] = {"op": "retry", "args": {"mappings": ["merchants"], "batch_size": BATCH}}
    keys = valid_keys("merchants", 100)
    mixed = []
    for n, batch in enumerate(push_batches("merchants", 0, 5, trial.rng, per_push=2)):
        mixed.append({"op": "push", "args": {"mapping": "merchants", "batches": [batch]}})
        items = update_items("merchants", [trial.rng.choice(keys)], trial.rng)
        mixed.append({"op": "update", "args": {"mapping": "merchants", "items": items, "pause": 0.05 * n}})
    workers = [
        trial.start("steps", knobs, steps=[retry, retry]),
        trial.start(
            "app",
            knobs,
            mapping="merchants",
            items=app_items("merchants", trial.rng.sample(keys, 20), trial.rng),
            pause=0.05,
        ),
        trial.start("steps", knobs, steps=mixed),
    ]
    victim = trial.rng.randrange(len(workers))
    trial.sleep(0.2, 1.5)
    stalled = trial.rng.uniform(2.5, 5.0)
    trial.note(f"worker {victim} (retry, app, push+update) stopped for {stalled:.1f} s")
    trial.stall(workers[victim], stalled)
    for worker in workers:
        trial.wait(worker)
    return trial.finish(["merchants"], baseline)


def stall_push_update(trial: Trial) -> list[str]:
    """Story 1: a push stopped between its source insert and its target write while an update of the same row
    writes and flags newer values; then the push goes on."""
    mapping = trial.rng.choice(["merchants", "payments"])
    baseline = trial.baseline([mapping])
    batch = push_batches(mapping, trial.rng.randrange(1000), 1, trial.rng)[0]
    key = {k: v for k, v in batch[0].items() if k == ("merchant_id" if mapping == "merchants" else "payment_id")}
    pusher = trial.start("push", {"TORTURE_PAUSE_AT": "push:before-target"}, mapping=mapping, batches=[batch])
    if _paused(trial, pusher):
        items = [{"key": key, "changes": changed_values(mapping, trial.rng)}]
        _meanwhile(trial, pusher, "update while the push was stopped", "update", mapping=mapping, items=items)
    trial.note(f"push: {trial.wait(pusher).get('result')}")
    return trial.finish([mapping], baseline)


def stall_lock_target(trial: Trial) -> list[str]:
    """Story 2: a retry batch held by a target row lock past its lease while an update takes the lease."""
    return _lock_drill(trial, side="target")


def stall_lock_source(trial: Trial) -> list[str]:
    """The same with the lock on a source row (the retry's flag step waits for it)."""
    return _lock_drill(trial, side="source")


def _lock_drill(trial: Trial, *, side: str) -> list[str]:
    _initial_sync(trial)
    keys = valid_keys("merchants", 12)[:10]
    trial.run("app", mapping="merchants", items=app_items("merchants", keys, trial.rng))  # unflagged again
    baseline = trial.baseline(["merchants"])
    zone = "internet" if side == "target" else "intranet"
    hold = float(SHORT_LEASE) + trial.rng.uniform(2.0, 3.0)
    locker = trial.start("lock", zone=zone, table=TABLE["merchants"], key={"merchant_id": keys[0]}, hold=hold)
    if locker.wait_for("locked", timeout=PAUSE_TIMEOUT)["event"] != "locked":
        return [f"harness: the {side} row lock was not taken"]
    retry = trial.start("retry", {"TORTURE_LEASE_SECONDS": SHORT_LEASE}, mappings=["merchants"], batch_size=20)
    trial.sleep(0.3, 1.0)
    updated = trial.run(
        "update", mapping="merchants", items=update_items("merchants", [trial.rng.choice(keys[1:])], trial.rng)
    )
    trial.note(f"update during the lock: {updated.get('result', updated.get('error'))}")
    trial.wait(locker)
    trial.note(f"retry: {trial.wait(retry).get('result')}")
    return trial.finish(["merchants"], baseline)


def stall_recover(trial: Trial) -> list[str]:
    """Story 3: `recover` runs while an update (intent path) is stopped past its lease, then the update goes on.
    An update that answers success must leave its new values in the source."""
    _initial_sync(trial)
    baseline = trial.baseline(["merchants"])
    key = trial.rng.choice(valid_keys("merchants", 40))
    point = trial.rng.choice(["update:flag-cleared", "update:after-source", "update:after-target"])
    items = update_items("merchants", [key], trial.rng)
    knobs = {"ZONESYNC_TWO_PHASE": "false", "TORTURE_PAUSE_AT": point, "TORTURE_UPDATE_LEASE_SECONDS": "1.5"}
    updater = trial.start("update", knobs, mapping="merchants", items=items)
    if _paused(trial, updater):
        trial.sleep(2.0, 2.5)  # the update's lease has expired
        _meanwhile(trial, updater, f"recover while the update was stopped at {point}", "recover")
    answer = trial.wait(updater).get("result") or ["?"]
    trial.note(f"update: {answer}")
    found = trial.finish(["merchants"], baseline)
    if answer[0] == "success":
        found += _answer_kept(trial, key, items[0]["changes"])
    return found


def _answer_kept(trial: Trial, key: int, changes: dict[str, Any]) -> list[str]:
    """An update that answered success: the source still holds its new values (nobody else wrote the row)."""
    row = checker.eligible_rows(trial.pair, MAPPINGS["merchants"]).get((key,))
    if row is None or (row["fee"], row["name"]) != (Decimal(changes["fee"]), changes["merchant_name"]):
        shown = None if row is None else (str(row["fee"]), row["name"])
        return [f"merchants: update of {key} answered success but the source holds {shown}, not its new values"]
    return []


def _meanwhile(trial: Trial, stopped: Worker, what: str, op: str, **args: Any) -> None:
    """Run `op` while `stopped` is stopped; continue `stopped` once `op` answered or after GRACE seconds (`op` may
    rightly wait for what the stopped process holds: a row lock, the SQLite write lock), then let both end."""
    other = trial.start(op, **args)
    try:
        answered = other.wait_for("done", "error", timeout=GRACE)
    except WorkerError:
        answered = {"event": "waiting"}
    stopped.signal(signal.SIGCONT)
    if answered["event"] != "waiting":
        other.events.put(answered)  # `wait` reads it again and gives the worker back
    else:
        trial.note(f"{op} was still waiting {GRACE:.0f} s later, when the stopped worker was continued")
    event = trial.wait(other)
    trial.note(f"{what}: {event.get('result', event.get('error'))}")


def _initial_sync(trial: Trial) -> None:
    """Carry every merchant once, so rows are flagged and in the target before the story starts."""
    for line in trial.sync_now(["merchants"]):
        trial.note(f"initial sync: {line}")


def _paused(trial: Trial, worker: Worker) -> bool:
    """Wait for the worker to stop itself at its pause point; False (noted) if it ended without reaching it."""
    event = worker.wait_for("paused", "done", "error", timeout=PAUSE_TIMEOUT)
    if event["event"] == "paused":
        return True
    trial.note(f"pause point not reached: {event.get('result', event.get('error', event['event']))}")
    worker.events.put(event)  # the answer is still to be read by `wait`
    return False
