"""Demo data for `zonesync demo`: merchants in the intranet zone, payments in the internet zone.

A few rows are deliberately invalid so the demo shows quarantine with reasons.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.bookkeeping import tables as bookkeeping
from zonesync.tasks.zones.engines import dialect_for, in_transaction

BASE_TIME = datetime(2026, 11, 25, 9, 0, 0, 123456, tzinfo=UTC)
INVALID_MERCHANTS = {13: "empty name", 42: "status 'X'", 77: "negative fee"}
INVALID_PAYMENTS = {7: "negative amount", 8: "empty reference"}  # successful payments the intranet refuses
DEMO_BUSINESS_DATE = BASE_TIME.date()
NEW_MERCHANT = {  # pushed by the demo "application" (JSON-like: decimals and timestamps as text)
    "merchant_id": 501, "merchant_name": "Kopi Kenangan 😀", "status": "A", "fee": "2.50",
    "email": "kopi@example.com", "tax_id": "NPWP-00000501", "updated_at": "2026-11-26T10:00:00.123456+07:00",
}  # fmt: skip
CLOSED_MERCHANT = 4  # the merchant the demo's application deletes (synced by then)
NAMES = ["Toko Sinar", "Café Ünïcode", "Warung 😀 Emoji", "Müller & Söhne", "北京商店", "O'Brien's Deli"]


def merchants(count: int = 500) -> pl.DataFrame:
    """Intranet merchants (source of the `merchants` mapping), a few of them invalid."""
    ids = list(range(1, count + 1))
    frame = pl.DataFrame(
        {
            "merchant_id": ids,
            "merchant_name": [f"{NAMES[i % len(NAMES)]} #{i}" for i in ids],
            "status": ["A" if i % 7 else "I" for i in ids],
            "fee": pl.Series([Decimal(i % 50) + Decimal("0.25") for i in ids], dtype=pl.Decimal(18, 2)),
            "email": [None if i % 5 == 0 else f"merchant{i}@example.com" for i in ids],
            "tax_id": [f"NPWP-{i:08d}" for i in ids],
            "updated_at": [BASE_TIME + timedelta(minutes=i) for i in ids],
            "is_sync": [False] * count,
        }
    )
    return frame.with_columns(
        pl.when(pl.col("merchant_id") == 13).then(pl.lit("")).otherwise(pl.col("merchant_name")).alias("merchant_name"),
        pl.when(pl.col("merchant_id") == 42).then(pl.lit("X")).otherwise(pl.col("status")).alias("status"),
        pl.when(pl.col("merchant_id") == 77).then(-pl.col("fee")).otherwise(pl.col("fee")).alias("fee"),
    )


def payments(count: int = 300) -> pl.DataFrame:
    """Internet payments (source of the `payments` mapping): mostly successful, some failed, pending or invalid."""
    ids = list(range(1, count + 1))
    frame = pl.DataFrame(
        {
            "payment_id": ids,
            "reference": [f"PAY-20261125-{i:06d}" for i in ids],
            "merchant_id": [1 + i % 40 for i in ids],
            "account": [f"ID{i:020d}" for i in ids],
            "amount": pl.Series([Decimal(i * 1250) / 100 for i in ids], dtype=pl.Decimal(18, 2)),
            "currency": ["IDR" if i % 3 else "USD" for i in ids],
            "status": ["F" if i % 10 == 0 else "P" if i % 10 == 1 else "S" for i in ids],
            "channel": ["mobile" if i % 2 else "web" for i in ids],
            "customer_name": [None if i % 9 == 0 else NAMES[i % len(NAMES)] for i in ids],
            "created_at": [BASE_TIME + timedelta(seconds=37 * i) for i in ids],
            "updated_at": [BASE_TIME + timedelta(seconds=37 * i + 5) for i in ids],
            "client_ip": [f"203.0.113.{i % 250}" for i in ids],
            "is_sync": [False] * count,
        }
    )
    return frame.with_columns(
        pl.when(pl.col("payment_id") == 7).then(-pl.col("amount")).otherwise(pl.col("amount")).alias("amount"),
        pl.when(pl.col("payment_id") == 8).then(pl.lit("")).otherwise(pl.col("reference")).alias("reference"),
    )


def write_rows(engine: Engine, table_name: str, frame: pl.DataFrame, keys: tuple[str, ...]) -> None:
    """Insert (or update) rows through the dialect's bulk path."""
    dialect = dialect_for(engine)
    table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
    in_transaction(engine, lambda conn: dialect.upsert(conn, table, frame, keys))


def reset_demo_zones(intranet: Engine, internet: Engine) -> None:
    """Recreate the demo tables and the bookkeeping tables, empty (the tombstones' too: no trigger writes them until
    the delete capture is installed again)."""
    for engine, metadata in ((intranet, intranet_tables()), (internet, internet_tables())):
        metadata.drop_all(engine)
        metadata.create_all(engine)
    bookkeeping.metadata.drop_all(intranet)
    bookkeeping.tombstone_metadata.drop_all(intranet)
    bookkeeping.create_bookkeeping(intranet)


def delete_merchant(intranet: Engine, merchant_id: int) -> None:
    """What the application does when a merchant closes: its row goes (the delete capture keeps a tombstone)."""
    table = sa.Table("merchant", sa.MetaData(), autoload_with=intranet)
    in_transaction(intranet, lambda conn: conn.execute(sa.delete(table).where(table.c.merchant_id == merchant_id)))


def seed_demo(intranet: Engine, internet: Engine) -> tuple[int, int]:
    """Fill the demo tables; return (merchants, payments) written."""
    merchant_rows, payment_rows = merchants(), payments()
    write_rows(intranet, "merchant", merchant_rows, ("merchant_id",))
    write_rows(internet, "payment", payment_rows, ("payment_id",))
    return merchant_rows.height, payment_rows.height


def fix_merchant(intranet: Engine, merchant_id: int, **changes: str) -> None:
    """What an operator does after reading the quarantine: correct the source row (new version, unsynced)."""
    dialect = dialect_for(intranet)
    table = sa.Table("merchant", sa.MetaData(), autoload_with=intranet)
    values = {name: [value] for name, value in changes.items()}
    change = dialect.encode(pl.DataFrame(values | {"updated_at": [datetime.now(UTC)], "is_sync": [False]}))
    statement = sa.update(table).where(table.c.merchant_id == merchant_id).values(**change.row(0, named=True))
    in_transaction(intranet, lambda conn: conn.execute(statement))
