"""The partitioned drill: several retry processes share the merchants in partitions, with leases of 2 s, each run
carrying them in 1 to 3 slices (threads); one is killed and one frozen (often past its lease, so that its partition
is taken over) at seeded random moments."""

from __future__ import annotations

from tests.torture.trial import BATCH, Trial

PARTITIONED = "tests.integration.partitioned_mappings"  # the demo's mappings, the merchants in 4 partitions
SHORT_LEASE = "2"  # seconds


def partitioned(trial: Trial) -> list[str]:
    """Three retry processes on the partitioned merchants, each in 1-3 slices: one SIGKILLed, one SIGSTOPped for
    0.5-4 s; recover, run again, check (only jobs flag rows: each synced row counted once, whichever slice of
    whichever process carried it)."""
    baseline = trial.baseline(["merchants"])
    knobs = {"TORTURE_LEASE_SECONDS": SHORT_LEASE, "ZONESYNC_MAPPING_MODULES": PARTITIONED}
    slices = [str(trial.rng.randint(1, 3)) for _ in range(3)]
    trial.note(f"slices per process: {', '.join(slices)}")
    workers = [
        trial.start("retry", knobs | {"ZONESYNC_WORKERS": count}, mappings=["merchants"], batch_size=BATCH)
        for count in slices
    ]
    killed, frozen = trial.rng.sample(range(len(workers)), 2)
    trial.sleep(0.2, 1.5)
    trial.note(f"worker {killed} killed: {'interrupted' if trial.kill(workers[killed]) else 'already done'}")
    stalled = trial.rng.uniform(0.5, 4.0)
    trial.note(f"worker {frozen} stopped for {stalled:.1f} s")
    trial.stall(workers[frozen], stalled)
    for index, worker in enumerate(workers):
        if index != killed:
            trial.note(str(trial.wait(worker).get("result"))[:200])
    # The final run sees the partitions too: it takes over a killed worker's partition lease, as the next run would.
    return trial.finish(["merchants"], baseline, jobs_only=True, knobs={"ZONESYNC_MAPPING_MODULES": PARTITIONED})
