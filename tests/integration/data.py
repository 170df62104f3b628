"""Source rows for the test mappings, with the outcome each row must have."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl

T0 = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)

ORDER_LINE_SCHEMA = {
    "order_ref": pl.String,
    "line_no": pl.Int64,
    "sku": pl.String,
    "qty_ordered": pl.Int64,
    "price": pl.Decimal(20, 4),
    "shipped_at": pl.Datetime("us", "UTC"),
    "internal_note": pl.String,
    "revision": pl.Int64,
    "is_sync": pl.Boolean,
}

# Invalid order lines and the reason each must be quarantined with: (order_ref, line_no) -> reason.
BAD_ORDER_LINES = {
    ("ORD-002", 2): "validation",  # qty 0
    ("ORD-003", 1): "validation",  # empty sku
    ("ORD-004", 2): "type_loss",  # price with four decimals
    ("ORD-007", 4): "validation",  # negative price
}
# Valid order lines the target database refuses (its CHECK constraint: sku <> 'REFUSED').
REFUSED_ORDER_LINES = {("ORD-006", 2): "constraint", ("ORD-009", 3): "constraint"}
# Order lines already flagged synced before the run: they must not be read, written or touched.
ALREADY_SYNCED = {("ORD-001", 3), ("ORD-005", 1), ("ORD-007", 2)}


def order_lines(orders: int = 9, *, refused: bool = False) -> pl.DataFrame:
    """Order lines over several orders (2 to 5 lines each); a few invalid, a few already synced, some NULL flags.

    With `refused`, the REFUSED_ORDER_LINES get sku 'REFUSED', which the target's CHECK constraint rejects.
    """
    records: list[dict[str, Any]] = []
    for order in range(1, orders + 1):
        ref = f"ORD-{order:03d}"
        for line in range(1, 2 + order % 4 + 1):
            n = order * 10 + line
            records.append(
                {
                    "order_ref": ref,
                    "line_no": line,
                    "sku": f"SKU{n:04d}",
                    "qty_ordered": 1 + n % 7,
                    "price": Decimal(f"{n}.{n % 100:02d}00"),
                    "shipped_at": None if n % 3 == 0 else T0 + timedelta(hours=n, microseconds=n),
                    "internal_note": f"internal {n}",
                    "revision": 1,
                    "is_sync": None if n % 4 == 0 else False,
                }
            )
    frame = pl.DataFrame(records, schema=ORDER_LINE_SCHEMA)
    overrides = (
        (("ORD-002", 2), "qty_ordered", 0),
        (("ORD-003", 1), "sku", ""),
        (("ORD-004", 2), "price", Decimal("12.3456")),
        (("ORD-007", 4), "price", Decimal("-1.5")),
        *((key, "sku", "REFUSED") for key in (REFUSED_ORDER_LINES if refused else {})),
    )
    for key, column, value in overrides:
        frame = frame.with_columns(_override(frame, key, column, value))
    return frame.with_columns(pl.when(_is_any(ALREADY_SYNCED)).then(True).otherwise(pl.col("is_sync")).alias("is_sync"))


def _is_key(key: tuple[str, int]) -> pl.Expr:
    return (pl.col("order_ref") == key[0]) & (pl.col("line_no") == key[1])


def _is_any(keys: set[tuple[str, int]]) -> pl.Expr:
    return pl.any_horizontal([_is_key(key) for key in keys])


def _override(frame: pl.DataFrame, key: tuple[str, int], column: str, value: Any) -> pl.Expr:
    dtype = frame.schema[column]
    return pl.when(_is_key(key)).then(pl.lit(value, dtype=dtype)).otherwise(pl.col(column)).alias(column)


NOTE_SCHEMA = {
    "note_key": pl.String,
    "body": pl.String,
    "amount": pl.Decimal(18, 2),
    "noted_at": pl.Datetime("us", "UTC"),
    "is_sync": pl.Boolean,
}


def notes(keys: list[str]) -> pl.DataFrame:
    """One unsynced note per key, values varied (some NULL)."""
    records = [
        {
            "note_key": key,
            "body": None if i % 4 == 3 else f"note {i}: {key}",
            "amount": None if i % 3 == 2 else Decimal(f"{i * 7}.{i:02d}"),
            "noted_at": None if i % 5 == 4 else T0 + timedelta(days=i, microseconds=i),
            "is_sync": False,
        }
        for i, key in enumerate(keys)
    ]
    return pl.DataFrame(records, schema=NOTE_SCHEMA)


EXACT_SCHEMA = {
    "item_id": pl.Int64,
    "amount": pl.Decimal(30, 12),
    "happened_at": pl.Datetime("us", "UTC"),
    "label": pl.String,
    "active": pl.Boolean,
    "day": pl.Date,
    "quantity": pl.Int64,
    "revision": pl.Int64,
    "is_sync": pl.Boolean,
}

# item_id -> the exact target values it must arrive with.
EXACT_ROWS: dict[int, dict[str, Any]] = {
    1: {
        "amount": Decimal("1234567890123456.78"),  # 18 significant digits
        "happened_at": datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
        "label": "emoji 😀🎉 music 𝄞 rare 𠜎 北京 Ünïcödé",
        "active": True,
        "day": date(2026, 2, 28),
        "quantity": 9_007_199_254_740_993,  # 2**53 + 1: a float round trip would change it
    },
    2: dict.fromkeys(("amount", "happened_at", "label", "active", "day", "quantity")),  # NULLs stay NULL
    3: {
        "amount": Decimal("-0.01"),
        "happened_at": datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
        "label": "",  # empty text is not NULL
        "active": False,
        "day": date(1999, 12, 31),
        "quantity": -9_007_199_254_740_993,
    },
    4: {
        "amount": Decimal("9999999999999999.99"),  # the largest numeric(18,2)
        "happened_at": datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC),
        "label": "NULL",  # the word, not a NULL
        "active": None,
        "day": None,
        "quantity": 0,
    },
    5: {
        "amount": Decimal("0.00"),
        "happened_at": datetime(2000, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        "label": "\\N",  # what COPY would read as NULL if it were not quoted
        "active": True,
        "day": date(2000, 2, 29),
        "quantity": None,
    },
    6: {
        "amount": Decimal("-9999999999999999.99"),
        "happened_at": datetime(2026, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        "label": 'it\'s "quoted", comma\ttab\nnewline\r\nCRLF back\\slash ; DROP TABLE zs_exact; --',
        "active": False,
        "day": date(2026, 1, 1),
        "quantity": 1,
    },
}
LOSSY_ITEM = 7  # amount 1.234 does not fit numeric(18,2)
LOSSY_AMOUNT = Decimal("1.234")
FINE_SCALE_ITEM = 8  # amount with 12 decimals: beyond the 10 a reader might keep
FINE_SCALE_AMOUNT = Decimal("1.000000000001")


def exact_values(
    extra: dict[int, Decimal] | None = None, rows: dict[int, dict[str, Any]] | None = None, revision: int = 1
) -> pl.DataFrame:
    """`rows` (default EXACT_ROWS) plus items with the given amounts (the rest of their values ordinary)."""
    records = [
        {"item_id": item, **values, "revision": revision, "is_sync": False}
        for item, values in (EXACT_ROWS if rows is None else rows).items()
    ]
    for item, amount in (extra or {}).items():
        records.append(
            {"item_id": item, "amount": amount, "happened_at": T0, "label": f"item {item}", "active": True,
             "day": date(2026, 3, 4), "quantity": item, "revision": 1, "is_sync": False}
        )  # fmt: skip
    return pl.DataFrame(records, schema=EXACT_SCHEMA)


# Merchant 1 as the update tests find it: in both zones and flagged (fixture `synced`).
SYNCED_MERCHANT: dict[str, Any] = {
    "merchant_id": 1, "merchant_name": "Toko Lama", "status": "A", "fee": "2.50", "email": "lama@example.com",
    "updated_at": "2026-11-26T10:00:00+07:00",
}  # fmt: skip
