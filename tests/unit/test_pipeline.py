"""The batch pipeline (tasks/zones/pipeline.py): batches delivered in order, each once; a claim the run never
delivers is abandoned; without overlap a claim waits for the delivery before it."""

from __future__ import annotations

import threading

import polars as pl
import pytest

from zonesync.tasks.zones.pipeline import Steps, carry_batches


class Recorder:
    """Steps over the numbers 0..total-1 in batches, recording what happened in which order."""

    def __init__(self, total: int, size: int, fail_delivering: int | None = None) -> None:
        self.total, self.size, self.fail_delivering = total, size, fail_delivering
        self.events: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def note(self, event: str, first: int) -> None:
        with self.lock:
            self.events.append((event, first))

    def read(self, after: int | None) -> pl.DataFrame:
        start = 0 if after is None else after + 1
        return pl.DataFrame({"n": list(range(start, min(start + self.size, self.total)))}, schema={"n": pl.Int64})

    def claim(self, batch: pl.DataFrame) -> int:
        self.note("claimed", batch["n"][0])
        return int(batch["n"][0])

    def deliver(self, first: int) -> None:
        if first == self.fail_delivering:
            raise RuntimeError("the target went away")
        self.note("delivered", first)

    def abandon(self, first: int) -> None:
        self.note("abandoned", first)

    def steps(self) -> Steps[int, int]:
        return Steps(self.read, lambda batch: int(batch["n"][-1]), self.claim, self.deliver, self.abandon)

    def of(self, event: str) -> list[int]:
        return [first for kind, first in self.events if kind == event]


@pytest.mark.parametrize("overlap", [True, False])
def test_every_batch_is_delivered_once_in_order(overlap: bool) -> None:
    recorder = Recorder(total=10, size=3)
    carry_batches(recorder.steps(), full=3, overlap=overlap)
    assert recorder.of("delivered") == [0, 3, 6, 9] and recorder.of("abandoned") == []


def test_without_overlap_each_claim_follows_the_previous_delivery() -> None:
    recorder = Recorder(total=9, size=3)
    carry_batches(recorder.steps(), full=3, overlap=False)
    assert recorder.events == [("claimed", 0), ("delivered", 0), ("claimed", 3), ("delivered", 3), ("claimed", 6),
                               ("delivered", 6)]  # fmt: skip


def test_a_failed_delivery_abandons_the_claim_made_meanwhile_and_delivers_nothing_after() -> None:
    recorder = Recorder(total=12, size=3, fail_delivering=3)
    with pytest.raises(RuntimeError, match="the target went away"):
        carry_batches(recorder.steps(), full=3, overlap=True)
    assert recorder.of("delivered") == [0] and recorder.of("abandoned") == [6]


def test_concurrent_carries_each_go_to_the_end() -> None:
    """Two pipelines at once in one process (the read-ahead and claiming threads are the process's) each deliver
    every batch of theirs, in order."""
    recorders = [Recorder(total=30, size=4) for _ in range(2)]
    threads = [threading.Thread(target=carry_batches, args=(r.steps(),), kwargs={"full": 4, "overlap": True})
               for r in recorders]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert all(r.of("delivered") == list(range(0, 30, 4)) for r in recorders)
