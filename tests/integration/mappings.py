"""Extra mappings the integration tests register (ZONESYNC_MAPPING_MODULES includes this module).

Declarations only; their tables are in `tests.integration.tables`. Source tables end in `_src` so a
source and its target can also live in one database (the changed-in-flight tests use that).
"""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl

from zonesync.schemas.mapping import SyncMapping


class OrderLineTarget(pa.DataFrameModel):
    """Composite key (order_no, line_no); order_no and qty are renamed from the source."""

    order_no: str = pa.Field(str_length={"min_value": 1, "max_value": 20})
    line_no: int = pa.Field(ge=1)
    sku: str = pa.Field(str_length={"min_value": 1, "max_value": 20})
    qty: int = pa.Field(gt=0)
    price: Annotated[pl.Decimal, 18, 2] = pa.Field(ge=0)
    shipped_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=True)


class NoteTarget(pa.DataFrameModel):
    """Text key, nullable values of every exact kind; no version column, so the guard compares values."""

    note_key: str = pa.Field(str_length={"min_value": 1, "max_value": 80})
    body: str = pa.Field(nullable=True)
    amount: Annotated[pl.Decimal, 18, 2] = pa.Field(nullable=True)
    noted_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=True)


class TicketTarget(pa.DataFrameModel):
    """Only tickets in state 'ready' are eligible."""

    ticket_id: int
    state: str = pa.Field(isin=["ready"])
    title: str


class ExactTarget(pa.DataFrameModel):
    """Every value kind that must arrive exactly."""

    item_id: int
    amount: Annotated[pl.Decimal, 18, 2] = pa.Field(nullable=True)
    happened_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=True)
    label: str = pa.Field(nullable=True)
    active: bool = pa.Field(nullable=True)
    day: pl.Date = pa.Field(nullable=True)
    quantity: int = pa.Field(nullable=True)


class BrokenTarget(pa.DataFrameModel):
    """For the mappings whose tables are missing or incomplete."""

    thing_id: int
    label: str


ORDER_LINES = SyncMapping(
    name="order_lines",
    direction="intranet_to_internet",
    source_table="zs_order_line_src",
    target_table="zs_order_line",
    keys=("order_no", "line_no"),
    model=OrderLineTarget,
    renames={"order_ref": "order_no", "qty_ordered": "qty"},  # internal_note is dropped
    version_column="revision",
)

NOTES = SyncMapping(
    name="notes",
    direction="intranet_to_internet",
    source_table="zs_note_src",
    target_table="zs_note",
    keys=("note_key",),
    model=NoteTarget,
)

TICKETS = SyncMapping(
    name="tickets",
    direction="intranet_to_internet",
    source_table="zs_ticket_src",
    target_table="zs_ticket",
    keys=("ticket_id",),
    model=TicketTarget,
    eligible={"state": "ready"},
)

EXACT_VALUES = SyncMapping(
    name="exact_values",
    direction="intranet_to_internet",
    source_table="zs_exact_src",
    target_table="zs_exact",
    keys=("item_id",),
    model=ExactTarget,
    version_column="revision",
)

GHOST = SyncMapping(
    name="ghost",
    direction="intranet_to_internet",
    source_table="zs_ghost_src",
    target_table="zs_ghost",  # never created
    keys=("thing_id",),
    model=BrokenTarget,
)

LACKING = SyncMapping(
    name="lacking",
    direction="intranet_to_internet",
    source_table="zs_lacking_src",
    target_table="zs_lacking",  # created without the label column
    keys=("thing_id",),
    model=BrokenTarget,
)
