"""A mapping whose key is personal data (an account number): declared sensitive, so no key of it is shown outside
the zones either (the sentinel scan, test_nothing_sensitive.py, registers it beside the demo mappings)."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl
import sqlalchemy as sa

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.types import exact_decimal, unicode_text


class AccountTarget(pa.DataFrameModel):
    """An account as the portal shows it to its holder."""

    account_no: str = pa.Field(str_length={"min_value": 1, "max_value": 40})
    holder: str = pa.Field(str_length={"min_value": 1, "max_value": 60})
    balance: Annotated[pl.Decimal, 18, 2] = pa.Field(ge=0)


ACCOUNTS = SyncMapping(
    name="accounts",
    direction="intranet_to_internet",
    source_table="zs_account_src",
    target_table="zs_account",
    keys=("account_no",),
    model=AccountTarget,
    sensitive_columns=("account_no",),
)


def account_tables() -> tuple[sa.MetaData, sa.MetaData]:
    """The source table (intranet) and the target table (internet)."""
    source, target = sa.MetaData(), sa.MetaData()
    for metadata, extra in ((source, [sa.Column("is_sync", sa.Boolean, nullable=False, server_default=sa.false())]),
                            (target, [])):  # fmt: skip
        sa.Table(
            "zs_account_src" if metadata is source else "zs_account", metadata,
            sa.Column("account_no", sa.String(40), primary_key=True),
            sa.Column("holder", unicode_text(60), nullable=False),
            sa.Column("balance", exact_decimal(18, 2), nullable=False),
            *extra,
        )  # fmt: skip
    return source, target
