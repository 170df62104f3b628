"""Blocks of neighbouring integer keys share a partition (`SyncMapping.partition_block`)."""

from __future__ import annotations

import dataclasses
from collections import Counter

from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.sync.partitions import partition_of_key

HASHED_ALONE = dataclasses.replace(MERCHANTS, partitions=32)
IN_BLOCKS = dataclasses.replace(MERCHANTS, partitions=32, partition_block=1024)


def test_a_block_of_neighbouring_keys_is_one_partition_and_blocks_spread_over_all() -> None:
    blocks = [{partition_of_key(IN_BLOCKS, (key,)) for key in range(start, start + 1024)} for start in (1024, 4096)]
    assert all(len(partitions) == 1 for partitions in blocks)
    spread = Counter(partition_of_key(IN_BLOCKS, (block * 1024,)) for block in range(3200))
    assert len(spread) == 32 and max(spread.values()) < 2 * min(spread.values())  # 100 blocks each, give or take


def test_a_block_starts_toward_zero_as_every_databases_remainder_does() -> None:
    assert {partition_of_key(IN_BLOCKS, (key,)) for key in range(-1023, 1024)} == {partition_of_key(IN_BLOCKS, (0,))}
    assert partition_of_key(IN_BLOCKS, (-1024,)) == partition_of_key(IN_BLOCKS, (-2047,))


def test_without_blocks_neighbours_are_spread() -> None:
    assert len({partition_of_key(HASHED_ALONE, (key,)) for key in range(1024, 1088)}) > 16
