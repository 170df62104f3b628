"""The HTTP API's coalescer, offline: concurrent requests are pushed together, each answered with its own result."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest

from zonesync.deployments.coalescing import Coalescer
from zonesync.tasks.push.pusher import Pusher
from zonesync.tasks.results import KeyOutcome, PushResult


class RecordingPusher:
    """Answers each request with the ids of its records; remembers how requests were grouped. Slow, like a push."""

    def __init__(self, seconds: float = 0.02, fail_with: Exception | None = None) -> None:
        self.seconds = seconds
        self.fail_with = fail_with
        self.batches: list[list[Any]] = []
        self.threads: set[int] = set()

    def push_many(self, requests: Sequence[object]) -> list[PushResult]:
        self.batches.append(list(requests))
        self.threads.add(threading.get_ident())
        time.sleep(self.seconds)
        if self.fail_with is not None:
            raise self.fail_with
        return [PushResult("m", "success", outcomes=[KeyOutcome({"id": r["id"]}, "success") for r in rs])
                for rs in cast(list[list[dict[str, Any]]], requests)]  # fmt: skip


def coalescer(pusher: RecordingPusher, max_records: int = 1000) -> Coalescer:
    return Coalescer(cast(Pusher, pusher), max_records=max_records)


def ids(result: PushResult) -> list[Any]:
    return [outcome.key["id"] for outcome in result.outcomes]


def test_requests_arriving_during_a_push_are_pushed_together_and_each_gets_its_own_result() -> None:
    pusher = RecordingPusher()

    async def scenario() -> list[PushResult]:
        merger = coalescer(pusher)
        first = asyncio.create_task(merger.push([{"id": 0}]))
        await asyncio.sleep(0.005)  # the first push is running now
        rest = [asyncio.create_task(merger.push([{"id": n}, {"id": n + 100}])) for n in range(1, 6)]
        return await asyncio.gather(first, *rest)

    results = asyncio.run(scenario())

    assert [ids(result) for result in results] == [[0]] + [[n, n + 100] for n in range(1, 6)]
    assert [len(batch) for batch in pusher.batches] == [1, 5]


def test_a_batch_holds_at_most_max_records_but_always_one_request() -> None:
    pusher = RecordingPusher()

    async def scenario() -> list[PushResult]:
        merger = coalescer(pusher, max_records=4)
        first = asyncio.create_task(merger.push([{"id": 0}]))
        await asyncio.sleep(0.005)
        sizes = [3, 1, 2, 9, 1]
        rest = [asyncio.create_task(merger.push([{"id": (n, i)} for i in range(size)])) for n, size in enumerate(sizes)]
        return await asyncio.gather(first, *rest)

    results = asyncio.run(scenario())

    assert [len(result.outcomes) for result in results] == [1, 3, 1, 2, 9, 1]
    assert [[len(request) for request in batch] for batch in pusher.batches] == [[1], [3, 1], [2], [9], [1]]


def test_a_failing_push_raises_in_every_request_of_its_batch_and_the_next_batch_still_runs() -> None:
    pusher = RecordingPusher(fail_with=RuntimeError("boom"))

    async def scenario() -> list[Any]:
        merger = coalescer(pusher)
        tasks = [asyncio.create_task(merger.push([{"id": n}])) for n in range(3)]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        pusher.fail_with = None
        return [*outcomes, await merger.push([{"id": 9}])]

    *failed, recovered = asyncio.run(scenario())

    assert [str(error) for error in failed] == ["boom"] * 3
    assert ids(recovered) == [9]


def test_a_request_that_goes_away_does_not_stop_the_others() -> None:
    pusher = RecordingPusher()

    async def scenario() -> list[PushResult]:
        merger = coalescer(pusher)
        first = asyncio.create_task(merger.push([{"id": 0}]))
        await asyncio.sleep(0.005)
        leaving = asyncio.create_task(merger.push([{"id": 1}]))
        staying = asyncio.create_task(merger.push([{"id": 2}]))
        await asyncio.sleep(0)
        leaving.cancel()
        return await asyncio.gather(first, staying)

    results = asyncio.run(scenario())

    assert [ids(result) for result in results] == [[0], [2]]
    assert sum(len(batch) for batch in pusher.batches) == 3  # the cancelled request's records were pushed anyway


@pytest.mark.parametrize("clients", [1, 8])
def test_pushes_of_one_mapping_never_overlap(clients: int) -> None:
    pusher = RecordingPusher(seconds=0.002)
    running = []

    original = pusher.push_many

    def exclusive(requests: Sequence[object]) -> list[PushResult]:
        running.append(1)
        assert len(running) == 1, "two pushes of one mapping ran at once"
        try:
            return original(requests)
        finally:
            running.pop()

    pusher.push_many = exclusive  # type: ignore[method-assign]

    async def scenario() -> list[PushResult]:
        merger = coalescer(pusher)

        async def client(n: int) -> list[PushResult]:
            return [await merger.push([{"id": (n, i)}]) for i in range(20)]

        return [r for rs in await asyncio.gather(*(client(n) for n in range(clients))) for r in rs]

    results = asyncio.run(scenario())

    assert sorted(ids(r)[0] for r in results) == sorted((n, i) for n in range(clients) for i in range(20))


def test_a_lone_client_never_waits_for_company() -> None:
    pusher = RecordingPusher(seconds=0.001)

    async def scenario() -> float:
        merger = Coalescer(cast(Pusher, pusher), gather_seconds=5.0)
        started = time.perf_counter()
        for n in range(5):
            await merger.push([{"id": n}])
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 2.0
    assert [len(batch) for batch in pusher.batches] == [1] * 5


def test_after_a_batch_the_next_waits_a_bounded_while_for_the_clients_in_play() -> None:
    """Clients answered together come back together, instead of splitting into halves that take turns; a client
    that does not come back delays the others by `gather_seconds` at most."""
    pusher = RecordingPusher(seconds=0.01)

    async def scenario() -> float:
        merger = Coalescer(cast(Pusher, pusher), gather_seconds=0.5)

        async def client(n: int, pushes: int) -> None:
            for i in range(pushes):
                await merger.push([{"id": (n, i)}])
                await asyncio.sleep(0.01 * n)  # this client's time to come back

        started = time.perf_counter()
        await asyncio.gather(client(0, 2), client(1, 3), client(2, 3))
        return time.perf_counter() - started

    elapsed = asyncio.run(scenario())

    # The three come back 0, 10 and 20 ms after their answer: pushed together again. Then client 0 is done:
    # the batch of the other two waits for a third request until the wait ends.
    assert [sorted(r["id"] for rs in batch for r in rs) for batch in pusher.batches] == [
        [(0, 0), (1, 0), (2, 0)],
        [(0, 1), (1, 1), (2, 1)],
        [(1, 2), (2, 2)],
    ]
    assert 0.45 <= elapsed < 2.0
