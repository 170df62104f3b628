"""Partitions: a mapping's rows split by a hash of their key, so that several workers share one mapping.

A row's partition is the first 32 bits of the MD5 of its key's canonical text (the reconciliation's: integers in
decimal, dates ISO, text as is, fields joined as `Reconciling.row_text` joins them), modulo the mapping's
`partitions`; with a `partition_block`, of the first key of the key's block instead, so that neighbours share a
partition. Every database computes it alike, and so does `partition_of_key` in Python. Each partition is
carried under its own lease (`partition_lease`); correctness does not rest on the leases but on the claims
(`tasks/sync/batch.py`): two workers on one partition are merely wasteful.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.lease import mapping_lease
from zonesync.tasks.dialects.reconciling import FIELD_SEPARATOR, Reconciling
from zonesync.tasks.zones.engines import dialect_for


@dataclass(frozen=True)
class Partition:
    """One of a mapping's partitions: `index` of `count`."""

    index: int
    count: int


def partitions_of(mapping: SyncMapping) -> list[Partition]:
    """Every partition of a mapping, in order."""
    return [Partition(index, mapping.partitions) for index in range(mapping.partitions)]


def in_partition(
    reconciling: Reconciling, table: sa.Table, mapping: SyncMapping, partition: Partition
) -> sa.ColumnElement[bool]:
    """The source rows of one partition."""
    return partition_number(reconciling, table, mapping) == sa.literal_column(str(partition.index), sa.BigInteger())


def partition_number(reconciling: Reconciling, table: sa.Table, mapping: SyncMapping) -> sa.ColumnElement[int]:
    """A source row's partition (0 .. partitions - 1). The count is a literal in the SQL, so that an index on this
    expression (`zonesync init` prints one where the database has them) serves each partition's reads."""
    keys = [reconciling.canonical_text(_hashed_value(table.c[column.source], mapping.partition_block), column.dtype)
            for column in mapping.key_columns]  # fmt: skip
    hashed = reconciling.hash32(reconciling.md5(reconciling.row_text(keys)))
    return hashed % sa.literal_column(str(mapping.partitions), sa.BigInteger())


def _hashed_value(key: sa.ColumnElement[Any], block: int) -> sa.ColumnElement[Any]:
    """The key, or (blocks of keys) the first key of its block, toward zero: `key - key % block`, which every
    database computes alike (each `%` keeps the dividend's sign) and without a division (MariaDB's is decimal)."""
    return key if block == 1 else key - key % sa.literal_column(str(block), sa.BigInteger())


def partition_of_key(mapping: SyncMapping, key: Sequence[Any]) -> int:
    """The partition of a key (values in the order of `mapping.keys`), as the databases compute it."""
    if mapping.partition_block > 1:
        (value,) = key
        rest = abs(value) % mapping.partition_block
        key = (value - (rest if value >= 0 else -rest),)
    texts = [_canonical(value) for value in key]
    joined = FIELD_SEPARATOR.join(f"1{text}" for text in texts).encode()
    digest = hashlib.md5(joined, usedforsecurity=False).hexdigest()  # a spread, as the databases hash: not a secret
    return int(digest[:8], 16) % mapping.partitions


def _canonical(value: Any) -> str:
    """A key value's canonical text (keys are integers, text or dates)."""
    return value.isoformat() if isinstance(value, date) else str(value)


def partition_lease(mapping: SyncMapping, partition: Partition) -> str:
    """The lease that serialises the writers of one partition."""
    return f"{mapping_lease(mapping.name)}:partition:{partition.index + 1}-of-{partition.count}"


@dataclass(frozen=True)
class CarriedPart:
    """What one lease covers: the whole mapping (no partition) or one of its partitions."""

    lease: str
    partition: Partition | None


def carried_parts(mapping: SyncMapping, source: Engine) -> list[CarriedPart]:
    """The parts a run carries, one after another, each under its lease: the mapping's partitions, or the whole
    mapping when it has one partition or its source database locks whole files (SQLite: one writer at a time)."""
    if mapping.partitions == 1 or not dialect_for(source).row_locks:
        return [CarriedPart(mapping_lease(mapping.name), None)]
    return [CarriedPart(partition_lease(mapping, partition), partition) for partition in partitions_of(mapping)]
