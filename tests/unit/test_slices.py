"""Slices of a partitioned mapping: the order each walks the partitions in, and how their results add up."""

from __future__ import annotations

from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.sync.slices import Slice, in_slice_order, merged, note_left, slices_for


def test_a_run_starts_one_slice_per_worker_and_never_more_than_the_parts() -> None:
    assert slices_for(parts=16, workers=4) == [Slice(0, 4), Slice(1, 4), Slice(2, 4), Slice(3, 4)]
    assert slices_for(parts=2, workers=8) == [Slice(0, 2), Slice(1, 2)]
    assert slices_for(parts=1, workers=8) == [Slice(0, 1)]


def test_each_slice_walks_every_part_from_its_own_share_on() -> None:
    parts = list(range(8))
    walks = [in_slice_order(parts, Slice(index, 3)) for index in range(3)]

    assert [walk[0] for walk in walks] == [0, 2, 5]  # siblings start apart
    assert all(sorted(walk) == parts for walk in walks)  # and each would carry whatever the others leave
    assert walks[1] == [2, 3, 4, 5, 6, 7, 0, 1]
    assert in_slice_order(parts, None) == parts


def slice_result(**counts: object) -> MappingSyncResult:
    return MappingSyncResult(mapping="merchants", **counts)  # type: ignore[arg-type]


def test_merged_slices_sum_their_counts_and_leave_only_what_no_slice_carried() -> None:
    results = [
        slice_result(read=10, upserted=9, flagged=9, quarantined=1, batches=2, seconds=3.0, pending_at_start=30,
                     partitions_carried=[1, 2], partitions_left=[3]),
        slice_result(read=20, upserted=20, flagged=20, batches=3, seconds=5.0, pending_at_start=30,
                     partitions_carried=[3], partitions_left=[1, 4]),
    ]  # fmt: skip

    total = merged("merchants", results)

    assert (total.read, total.upserted, total.flagged, total.quarantined, total.batches) == (30, 29, 29, 1, 5)
    assert (total.seconds, total.pending_at_start) == (5.0, 30)  # slices run side by side: the longest one
    assert total.partitions_carried == [1, 2, 3] and total.partitions_left == [4]
    assert total.status == "partial" and total.message == "partitions 4 left to other runs"


def test_merged_slices_keep_an_error_and_every_message() -> None:
    results = [
        slice_result(read=5, flagged=5, upserted=5, partitions_carried=[1]),
        slice_result(status="error", message="the internet zone did not answer", partitions_left=[2]),
    ]

    total = merged("merchants", results)

    assert total.status == "error" and total.message == "the internet zone did not answer"
    assert total.flagged == 5


def test_slices_that_carried_nothing_and_found_partitions_busy_skipped_the_mapping() -> None:
    total = merged("merchants", [slice_result(partitions_left=[1, 2]), slice_result(partitions_left=[2, 1])])

    assert total.status == "skipped" and "every partition is busy" in total.message
    assert merged("merchants", [slice_result(), slice_result()]).status == "no_record"


def test_a_partition_carried_at_one_moment_and_found_busy_at_another_is_not_left() -> None:
    result = slice_result(read=1, flagged=1, upserted=1, partitions_carried=[2, 1, 2], partitions_left=[2, 3, 3])

    note_left(result)

    assert result.partitions_carried == [1, 2] and result.partitions_left == [3]
    assert result.message == "partitions 3 left to other runs"
