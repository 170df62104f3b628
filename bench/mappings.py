"""The benchmark's mappings: payments pushed from the intranet to the internet zone.

Selected with `ZONESYNC_MAPPING_MODULES=bench.mappings` (the benchmark sets it). Two mappings share one
model and differ only in their tables, so the scaling run (`bench_payments_small`) has identical DDL.
"""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from zonesync.schemas.mapping import SyncMapping

FULL_TABLE = "bench_payment"
SMALL_TABLE = "bench_payment_small"


class BenchPayment(pa.DataFrameModel):
    """A payment as the internet zone keeps it (the 10 columns the target has)."""

    payment_id: int
    reference: str = pa.Field(str_length={"min_value": 1, "max_value": 40})
    account: str = pa.Field(str_length={"max_value": 34})
    amount: Annotated[pl.Decimal, 18, 2] = pa.Field(gt=0)
    currency: str = pa.Field(str_length={"min_value": 3, "max_value": 3})
    status: str = pa.Field(isin=["S", "F", "P"])
    channel: str = pa.Field(str_length={"max_value": 20})
    customer_name: str = pa.Field(nullable=True, str_length={"max_value": 100})
    created_at: Annotated[pl.Datetime, "us", "UTC"]
    updated_at: Annotated[pl.Datetime, "us", "UTC"]


def _payments(name: str, table: str) -> SyncMapping:
    return SyncMapping(
        name=name,
        direction="intranet_to_internet",
        source_table=table,
        target_table=table,
        keys=("payment_id",),
        model=BenchPayment,
        version_column="updated_at",
        description="Benchmark payments; internal_note stays in the intranet zone.",
    )


BENCH_PAYMENTS = _payments("bench_payments", FULL_TABLE)
BENCH_PAYMENTS_SMALL = _payments("bench_payments_small", SMALL_TABLE)
