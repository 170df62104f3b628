"""Portable column types for tables zonesync creates (bookkeeping, demo, tests, benchmarks): the one place where
a column's storage is declared per database (SQLAlchemy's `with_variant`); a database without a variant here
takes SQLAlchemy's generic type.

SQLite has no exact decimal and no tz-aware timestamp: its NUMERIC affinity silently turns
'123456789012345678.12' into an integer. Exact values are therefore stored as text there.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql


def exact_decimal(precision: int, scale: int) -> sa.types.TypeEngine[Any]:
    """numeric(p, s) on servers, text on SQLite (which would otherwise lose digits)."""
    return sa.Numeric(precision, scale).with_variant(sa.String(precision + 2), "sqlite")


def utc_timestamp() -> sa.types.TypeEngine[Any]:
    """timestamptz on PostgreSQL, DATETIME(6) holding UTC on MariaDB, ISO-8601 text on SQLite."""
    return (
        sa.DateTime(timezone=True)
        .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
        .with_variant(sa.String(40), "sqlite")
    )


def unicode_text(length: int) -> sa.types.TypeEngine[Any]:
    """varchar(length) that keeps every Unicode character (utf8mb4 on MariaDB)."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


def utc_wall_clock() -> sa.types.TypeEngine[Any]:
    """A timestamp without time zone holding UTC, to the microsecond (DATETIME(6) on MariaDB)."""
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def row_id() -> sa.types.TypeEngine[Any]:
    """A 64-bit generated id; INTEGER on SQLite, where only an INTEGER PRIMARY KEY is the rowid."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")
