"""Request coalescing for the HTTP entry point: the pushes of one mapping run one at a time, and the requests
that arrive meanwhile are written together as the next batch (one source transaction, one validation, one target
upsert, one flag update), each still answered for its own records."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from starlette.concurrency import run_in_threadpool

from zonesync.tasks.push.pusher import Pusher
from zonesync.tasks.results import PushResult

MAX_BATCH_RECORDS = 1000  # records of waiting requests written together (a larger request goes alone)


GATHER_SECONDS = 0.002  # the longest a batch waits, after the previous one, for the clients it expects


class Coalescer:
    """Runs one push at a time for a mapping; requests that arrive meanwhile are pushed together next.

    Right after a batch, the next one waits (at most `gather_seconds` after the batch ended) for as many requests
    as there were clients in play — those it answered and those already waiting — so that concurrent clients
    keep being pushed together. Without it they settle into two halves that take turns, each waiting for the
    other's batch as well as its own. A lone client never waits: its next request is all that is expected.
    """

    def __init__(
        self, pusher: Pusher, max_records: int = MAX_BATCH_RECORDS, gather_seconds: float = GATHER_SECONDS
    ) -> None:
        self.pusher = pusher
        self.max_records = max_records
        self.gather_seconds = gather_seconds
        self._waiting: list[tuple[list[Any], asyncio.Future[PushResult]]] = []
        self._drainer: asyncio.Task[None] | None = None  # the one push of this mapping running (a second would
        # only compete for the same CPU: measured slower)
        self._arrived = asyncio.Event()
        self._expected = 0  # requests in play when the last batch ended
        self._ended = -math.inf  # when it ended (event loop time)

    async def push(self, records: list[Any]) -> PushResult:
        """This request's result, from the batch it was written in."""
        future: asyncio.Future[PushResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((records, future))
        self._arrived.set()
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Push the waiting requests batch by batch until none is left."""
        try:
            while self._waiting:
                await self._gather()
                batch = self._next_batch()
                try:
                    results = await run_in_threadpool(self.pusher.push_many, [records for records, _ in batch])
                except Exception as exc:  # each request raises it, as it would have alone
                    for _, future in batch:
                        _settle(future, exc)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        _settle(future, result)
                finally:
                    for _, future in batch:  # only if this task was cancelled: do not leave a request waiting
                        future.cancel()
                self._expected, self._ended = len(batch) + len(self._waiting), asyncio.get_running_loop().time()
        finally:
            self._drainer = None

    async def _gather(self) -> None:
        """Wait, until `gather_seconds` after the last batch ended, for the requests expected (or a full batch)."""
        loop = asyncio.get_running_loop()
        while len(self._waiting) < self._expected and sum(len(r) for r, _ in self._waiting) < self.max_records:
            remaining = self._ended + self.gather_seconds - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _next_batch(self) -> list[tuple[list[Any], asyncio.Future[PushResult]]]:
        """The longest run of waiting requests within `max_records` (at least one request)."""
        taken, records = 1, len(self._waiting[0][0])
        while taken < len(self._waiting) and records + len(self._waiting[taken][0]) <= self.max_records:
            records += len(self._waiting[taken][0])
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch


def _settle(future: asyncio.Future[PushResult], outcome: PushResult | Exception) -> None:
    """Answer a waiting request (unless it went away: its records were pushed all the same)."""
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
