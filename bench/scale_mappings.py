"""The scale-out benchmark's mappings: the benchmark payments, hashed by key into partitions.

Selected with `ZONESYNC_MAPPING_MODULES=bench.scale_mappings` (the benchmark sets it in every worker). The model
and tables are `bench/mappings.py`'s; only the partition count and block differ, read from
`ZONESYNC_BENCH_PARTITIONS` and `ZONESYNC_BENCH_PARTITION_BLOCK` (the benchmark's `--partitions` and
`--partition-block`), so that the parent and every worker declare the very same mapping. A second, unpartitioned
mapping on an empty table of the same DDL gives each worker an untimed warm-up call of the real flow (imports,
Prefect client, flow and task run records, connections) that syncs nothing.
"""

from __future__ import annotations

import dataclasses
import os

from bench.mappings import BENCH_PAYMENTS
from zonesync.schemas.mapping import SyncMapping

PARTITIONS_VARIABLE = "ZONESYNC_BENCH_PARTITIONS"
BLOCK_VARIABLE = "ZONESYNC_BENCH_PARTITION_BLOCK"  # the benchmark's --partition-block
DEFAULT_PARTITIONS = 32  # many more than workers: a worker that finishes takes the next free one (absorbs skew)
SCALED_TABLE = "bench_payment"
WARM_UP_TABLE = "bench_payment_warm_up"


def _payments(name: str, table: str, partitions: int, block: int = 1) -> SyncMapping:
    """`bench.mappings`' payments, on another table, in `partitions` partitions (of blocks of `block` keys)."""
    return dataclasses.replace(
        BENCH_PAYMENTS, name=name, source_table=table, target_table=table, partitions=partitions,
        partition_block=block,
        description="Benchmark payments shared by several workers; internal_note stays in the intranet zone.",
    )  # fmt: skip


def partitions_from_environment() -> int:
    """The partition count the benchmark chose (`--partitions`), or the default."""
    return int(os.environ.get(PARTITIONS_VARIABLE, DEFAULT_PARTITIONS))


BENCH_PAYMENTS_SCALED = _payments("bench_payments_scaled", SCALED_TABLE, partitions_from_environment(),
                                  int(os.environ.get(BLOCK_VARIABLE, 1)))  # fmt: skip
BENCH_PAYMENTS_WARM_UP = _payments("bench_payments_warm_up", WARM_UP_TABLE, 1)
