"""The demo domain: merchants go out to the internet zone, successful payments come back.

These are the mappings registered by default (`ZONESYNC_MAPPING_MODULES=zonesync.schemas.examples`).
"""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from zonesync.schemas.mapping import SyncMapping


class MerchantTarget(pa.DataFrameModel):
    """A merchant as payment channels see it (internet zone)."""

    merchant_id: int
    name: str = pa.Field(str_length={"min_value": 1, "max_value": 100})
    status: str = pa.Field(isin=["A", "I"])
    fee: Annotated[pl.Decimal, 18, 2] = pa.Field(ge=0)
    email: str = pa.Field(nullable=True, str_length={"max_value": 200})
    updated_at: Annotated[pl.Datetime, "us", "UTC"]


class PaymentRecord(pa.DataFrameModel):
    """A payment as the system of record keeps it (intranet zone)."""

    payment_id: int
    reference: str = pa.Field(str_length={"min_value": 1, "max_value": 40})
    merchant_id: int
    account: str = pa.Field(str_length={"max_value": 34})
    amount: Annotated[pl.Decimal, 18, 2] = pa.Field(gt=0)
    currency: str = pa.Field(str_length={"min_value": 3, "max_value": 3})
    status: str = pa.Field(isin=["S", "F", "P"])
    channel: str = pa.Field(str_length={"max_value": 20})
    customer_name: str = pa.Field(nullable=True, str_length={"max_value": 100})
    created_at: Annotated[pl.Datetime, "us", "UTC"]
    updated_at: Annotated[pl.Datetime, "us", "UTC"]


MERCHANTS = SyncMapping(
    name="merchants",
    direction="intranet_to_internet",
    source_table="merchant",
    target_table="merchant",
    keys=("merchant_id",),
    model=MerchantTarget,
    renames={"merchant_name": "name"},
    version_column="updated_at",
    # A merchant closed in the intranet must vanish from the payment channels at once, and stay on record:
    # archived (moved to merchant_archive in the internet zone), not soft-deleted (a channel reading the table
    # would still see it) and not hard-deleted (its history would be gone).
    on_delete="archive",
    description="Merchant master data published to the payment channels; tax_id stays inside.",
)

PAYMENTS = SyncMapping(
    name="payments",
    direction="internet_to_intranet",
    source_table="payment",
    target_table="payment",
    keys=("payment_id",),
    model=PaymentRecord,
    version_column="updated_at",
    eligible={"status": "S"},
    business_date_column="created_at",
    reconcile_by=("status", "currency"),
    amount_columns=("amount",),
    description="Successful payments brought back to the system of record; client_ip stays outside.",
)
