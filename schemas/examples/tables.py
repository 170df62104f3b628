"""Table declarations of the demo domain in both zones (created by `zonesync demo` and the tests)."""

from __future__ import annotations

import sqlalchemy as sa

from zonesync.schemas.types import exact_decimal, unicode_text, utc_timestamp


def _merchant_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("merchant_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(1), nullable=False),
        sa.Column("fee", exact_decimal(18, 2), nullable=False),
        sa.Column("email", unicode_text(200)),
        sa.Column("updated_at", utc_timestamp(), nullable=False),
    ]


def _payment_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("payment_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("reference", sa.String(40), nullable=False, unique=True),
        sa.Column("merchant_id", sa.BigInteger, nullable=False),
        sa.Column("account", sa.String(34), nullable=False),
        sa.Column("amount", exact_decimal(18, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(1), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("customer_name", unicode_text(100)),
        sa.Column("created_at", utc_timestamp(), nullable=False),
        sa.Column("updated_at", utc_timestamp(), nullable=False),
    ]


def intranet_tables() -> sa.MetaData:
    """Demo tables of the intranet zone: merchants (source, with internal tax_id) and payments (target)."""
    metadata = sa.MetaData()
    sa.Table(
        "merchant", metadata,
        *_merchant_columns(),
        sa.Column("merchant_name", unicode_text(100), nullable=False),
        sa.Column("tax_id", sa.String(20)),
        sa.Column("is_sync", sa.Boolean, nullable=False, server_default=sa.false()),
    )  # fmt: skip
    sa.Table("payment", metadata, *_payment_columns())
    return metadata


def internet_tables() -> sa.MetaData:
    """Demo tables of the internet zone: merchants (target, one per email, and their archive) and payments (source,
    with client_ip)."""
    metadata = sa.MetaData()
    merchant = sa.Table(
        "merchant", metadata, *_merchant_columns(), sa.Column("name", unicode_text(100), nullable=False)
    )  # fmt: skip
    sa.Index("ux_merchant_login_email", merchant.c.email, unique=True)  # a channel login: one merchant per email
    sa.Table(
        "merchant_archive", metadata,  # where `on_delete="archive"` moves a merchant deleted in the intranet
        *(sa.Column(column.name, column.type, nullable=column.nullable) for column in merchant.columns),
        sa.Column("deleted_at", utc_timestamp(), nullable=False),
        sa.Index("ix_merchant_archive_merchant_id", "merchant_id"),
    )  # fmt: skip
    sa.Table(
        "payment", metadata,
        *_payment_columns(),
        sa.Column("client_ip", sa.String(45)),
        sa.Column("is_sync", sa.Boolean, nullable=False, server_default=sa.false()),
    )  # fmt: skip
    return metadata
