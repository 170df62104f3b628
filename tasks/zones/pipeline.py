"""Carrying batches from one zone to the other with the three steps overlapped: read batch k+1, claim batch k and
deliver batch k-1 at once, each on its own connection. Rows (`tasks/sync/run.py`) and tombstones
(`tasks/deletes/carrier.py`) go through it; what a step does is theirs.

A claim holds its batch in an open source transaction until its delivery commits it, so at most three batches are
held in memory, and a run that stops rolls back the claim it has not delivered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import polars as pl

Cursor = TypeVar("Cursor")  # where the next read starts
Held = TypeVar("Held")  # a claimed batch


@dataclass(frozen=True)
class Steps(Generic[Cursor, Held]):
    """What carrying one batch takes: `read` the batch after a cursor (None: the first), `after` its last cursor,
    `claim` it, `deliver` the claim (committing it), `abandon` a claim never delivered."""

    read: Callable[[Cursor | None], pl.DataFrame]
    after: Callable[[pl.DataFrame], Cursor]
    claim: Callable[[pl.DataFrame], Held]
    deliver: Callable[[Held], None]
    abandon: Callable[[Held], None]


def carry_batches(steps: Steps[Cursor, Held], *, full: int, overlap: bool) -> None:
    """Carry every batch, a batch shorter than `full` being the last. Without `overlap` (the source cannot hold two
    claims at once: SQLite locks the whole file) a claim waits for the previous delivery instead."""
    with _lent_workers() as (reader_pool, claimer_pool):
        next_read: Future[pl.DataFrame] | None = reader_pool.submit(steps.read, None)
        claiming: Future[Held] | None = None
        try:
            while next_read is not None:
                raw = next_read.result()
                if raw.is_empty():
                    break
                next_read = reader_pool.submit(steps.read, steps.after(raw)) if raw.height >= full else None
                previous, claiming = (claiming.result() if claiming else None), None
                if previous is not None and not overlap:
                    steps.deliver(previous)
                    previous = None
                claiming = claimer_pool.submit(steps.claim, raw)
                if previous is not None:
                    steps.deliver(previous)
            if claiming is not None:
                last, claiming = claiming.result(), None
                steps.deliver(last)
        finally:
            if next_read is not None and not next_read.cancel():
                next_read.exception()  # wait: a read still running must not outlive the run
            if claiming is not None and claiming.exception() is None:
                steps.abandon(claiming.result())  # the run failed: the claimed batch stays pending


Workers = tuple[ThreadPoolExecutor, ThreadPoolExecutor]
_idle: list[Workers] = []
_idle_lock = threading.Lock()


@contextmanager
def _lent_workers() -> Iterator[Workers]:
    """A read-ahead thread and a claiming thread, lent to one carry at a time: carries running at once in one
    process (partitions, or a step of one carry that runs another) never wait for each other's threads.

    Given back and reused across runs: new threads per run each get their own malloc arena, and the process grew by
    tens of MB per run until MALLOC_ARENA_MAX was set.
    """
    with _idle_lock:
        workers = _idle.pop() if _idle else (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="zonesync-read"),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="zonesync-claim"),
        )  # fmt: skip
    try:
        yield workers
    finally:
        with _idle_lock:
            _idle.append(workers)
