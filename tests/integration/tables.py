"""Tables of the test mappings (and a demo-merchant source variant), built from zonesync's portable types."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from zonesync.schemas.types import exact_decimal, unicode_text, utc_timestamp


def _flag() -> sa.Column[bool]:
    # Nullable on purpose: a NULL flag counts as "not synced".
    return sa.Column("is_sync", sa.Boolean, nullable=True, server_default=sa.false())


def source_tables() -> sa.MetaData:
    """Source tables of the test mappings (intranet zone)."""
    metadata = sa.MetaData()
    sa.Table(
        "zs_order_line_src", metadata,
        sa.Column("order_ref", sa.String(20), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sku", sa.String(40), nullable=False),
        sa.Column("qty_ordered", sa.Integer, nullable=False),
        sa.Column("price", exact_decimal(20, 4), nullable=False),  # wider than the target: can lose digits
        sa.Column("shipped_at", utc_timestamp()),
        sa.Column("internal_note", sa.String(100)),  # never leaves the intranet
        sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
        _flag(),
    )  # fmt: skip
    sa.Table(
        "zs_note_src", metadata,
        sa.Column("note_key", unicode_text(80), primary_key=True),
        sa.Column("body", unicode_text(200)),
        sa.Column("amount", exact_decimal(18, 2)),
        sa.Column("noted_at", utc_timestamp()),
        _flag(),
    )  # fmt: skip
    sa.Table(
        "zs_ticket_src", metadata,
        sa.Column("ticket_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("title", sa.String(50), nullable=False),
        _flag(),
    )  # fmt: skip
    sa.Table(
        "zs_exact_src", metadata,
        sa.Column("item_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("amount", exact_decimal(30, 12)),  # wider than the target: can lose digits
        sa.Column("happened_at", utc_timestamp()),
        sa.Column("label", unicode_text(200)),
        sa.Column("active", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("quantity", sa.BigInteger),
        sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
        _flag(),
    )  # fmt: skip
    return metadata


def target_tables() -> sa.MetaData:
    """Target tables of the test mappings (internet zone)."""
    metadata = sa.MetaData()
    sa.Table(
        "zs_order_line", metadata,
        sa.Column("order_no", sa.String(20), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("sku", sa.String(8), nullable=False),  # shorter than the model allows: servers refuse more
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("price", exact_decimal(18, 2), nullable=False),
        sa.Column("shipped_at", utc_timestamp()),
        sa.Column("internal_note", sa.String(100)),  # not in the model: must stay NULL (the column is dropped)
        sa.CheckConstraint("sku <> 'REFUSED'", name="ck_zs_order_line_sku"),
    )  # fmt: skip
    sa.Table(
        "zs_note", metadata,
        sa.Column("note_key", unicode_text(80), primary_key=True),
        sa.Column("body", unicode_text(200)),
        sa.Column("amount", exact_decimal(18, 2)),
        sa.Column("noted_at", utc_timestamp()),
    )  # fmt: skip
    sa.Table(
        "zs_ticket", metadata,
        sa.Column("ticket_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("title", sa.String(50), nullable=False),
    )  # fmt: skip
    sa.Table(
        "zs_exact", metadata,
        sa.Column("item_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("amount", exact_decimal(18, 2)),
        sa.Column("happened_at", utc_timestamp()),
        sa.Column("label", unicode_text(200)),
        sa.Column("active", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("quantity", sa.BigInteger),
    )  # fmt: skip
    return metadata


def broken_tables() -> tuple[sa.MetaData, sa.MetaData]:
    """(source, target) tables of the `ghost` and `lacking` mappings: no ghost target, no lacking.label."""
    source, target = sa.MetaData(), sa.MetaData()
    for name in ("zs_ghost_src", "zs_lacking_src"):
        sa.Table(
            name, source,
            sa.Column("thing_id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("label", sa.String(20), nullable=False),
            _flag(),
        )  # fmt: skip
    sa.Table("zs_lacking", target, sa.Column("thing_id", sa.Integer, primary_key=True, autoincrement=False))
    return source, target


def loose_merchant_source() -> sa.MetaData:
    """The demo intranet merchant table, loosened so more kinds of bad rows can exist in the source.

    merchant_id is not unique (duplicates reach one batch) and fee keeps four decimals (more than the
    target's two). A surrogate row_id is the primary key; it is not mapped, so it never leaves the zone.
    """
    metadata = sa.MetaData()
    sa.Table(
        "merchant", metadata,
        sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("merchant_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("merchant_name", unicode_text(100), nullable=False),
        sa.Column("status", sa.String(1), nullable=False),
        sa.Column("fee", exact_decimal(20, 4), nullable=False),
        sa.Column("email", unicode_text(200)),
        sa.Column("tax_id", sa.String(20)),
        sa.Column("updated_at", utc_timestamp(), nullable=False),
        sa.Column("is_sync", sa.Boolean, nullable=False, server_default=sa.false()),
    )  # fmt: skip
    return metadata


def linguistic_text(length: int) -> sa.types.TypeEngine[str]:
    """Text compared the way people sort words ('a' < 'B' < 'c'), as most servers are set up by default:
    ICU on PostgreSQL, utf8mb4_unicode_ci on MariaDB, NOCASE on SQLite. Byte order would put 'B' first."""
    return (
        sa.String(length, collation="NOCASE")
        .with_variant(postgresql.VARCHAR(length, collation="und-x-icu"), "postgresql")
        .with_variant(mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_unicode_ci"), "mysql", "mariadb")
    )


def collated_note_tables() -> tuple[sa.MetaData, sa.MetaData]:
    """(source, target) tables of the `notes` mapping whose text key uses a linguistic collation."""
    source, target = sa.MetaData(), sa.MetaData()
    for metadata, name, extra in ((source, "zs_note_src", [_flag()]), (target, "zs_note", [])):
        sa.Table(
            name, metadata,
            sa.Column("note_key", linguistic_text(80), primary_key=True),
            sa.Column("body", unicode_text(200)),
            sa.Column("amount", exact_decimal(18, 2)),
            sa.Column("noted_at", utc_timestamp()),
            *extra,
        )  # fmt: skip
    return source, target


def case_insensitive_note_tables() -> tuple[sa.MetaData, sa.MetaData]:
    """(source, target) tables of the `notes` mapping whose *body* uses the server's linguistic collation, which
    calls 'Hello', 'HELLO' (and on MariaDB 'Hello ') equal."""
    source, target = sa.MetaData(), sa.MetaData()
    for metadata, name, extra in ((source, "zs_note_src", [_flag()]), (target, "zs_note", [])):
        sa.Table(
            name, metadata,
            sa.Column("note_key", sa.String(80), primary_key=True),
            sa.Column("body", linguistic_text(200)),
            sa.Column("amount", exact_decimal(18, 2)),
            sa.Column("noted_at", utc_timestamp()),
            *extra,
        )  # fmt: skip
    return source, target
