"""Records from applications checked and converted for the source table, offline (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.push.records import RecordError, coerce_records, coerce_update


def merchant_table(dialect: str = "postgresql") -> sa.Table:
    """The demo intranet merchant table as a server database (or SQLite, as text) would reflect it."""
    text = dialect == "sqlite"
    return sa.Table(
        "merchant", sa.MetaData(),
        sa.Column("merchant_id", sa.BigInteger, primary_key=True),
        sa.Column("merchant_name", sa.String(100)),
        sa.Column("status", sa.String(1)),
        sa.Column("fee", sa.String(20) if text else sa.Numeric(18, 2)),
        sa.Column("email", sa.String(200)),
        sa.Column("tax_id", sa.String(20)),
        sa.Column("updated_at", sa.String(40) if text else sa.DateTime(timezone=True)),
        sa.Column("opened_on", sa.Date),
        sa.Column("is_sync", sa.Boolean),
    )  # fmt: skip


GOOD: dict[str, Any] = {
    "merchant_id": 7,
    "merchant_name": "Toko",
    "status": "A",
    "fee": "12.50",
    "updated_at": "2026-11-26T10:00:00.123456+07:00",
}


def coerce(record: dict[str, Any], dialect: str = "postgresql") -> dict[str, Any]:
    return coerce_records(merchant_table(dialect), MERCHANTS, [record])[0]


def refusal(record: Any, dialect: str = "postgresql") -> RecordError:
    with pytest.raises(RecordError) as caught:
        coerce_records(merchant_table(dialect), MERCHANTS, record if isinstance(record, list) else [record])
    return caught.value


def test_a_good_record_is_converted_exactly_and_its_flag_set_false() -> None:
    row = coerce(GOOD)

    assert row["fee"] == Decimal("12.50")
    assert row["updated_at"] == datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=7)))
    assert row["is_sync"] is False


@pytest.mark.parametrize("fee", [Decimal("1234567890123456.78"), "1234567890123456.78", 12, 0.5, "1e2"])
def test_decimals_that_fit_pass_unrounded(fee: Any) -> None:
    assert coerce({**GOOD, "fee": fee})["fee"] == Decimal(str(fee))


@pytest.mark.parametrize(
    ("fee", "message"),
    [
        ("1.234", "got 3 digits after the point; the column keeps 2"),
        ("12345678901234567", "got 17 digits before the point; the column keeps 16"),
        ("abc", "got a text of 3 character(s), which is not a number"),
        ("NaN", "not a finite number"),
        (True, "expected a decimal number"),
    ],
)
def test_decimals_the_column_would_change_are_refused(fee: Any, message: str) -> None:
    error = refusal({**GOOD, "fee": fee})

    assert error.reason == "invalid_value"
    assert "record 1" in str(error) and "'fee'" in str(error) and message in str(error)


def test_naive_timestamps_are_utc_and_dates_parse() -> None:
    row = coerce({**GOOD, "updated_at": "2026-11-26 10:00:00", "opened_on": "2026-01-31"})

    assert row["updated_at"] == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert row["opened_on"] == date(2026, 1, 31)


def test_sqlite_text_columns_get_the_exact_text_of_declared_decimals_and_timestamps() -> None:
    row = coerce(GOOD, dialect="sqlite")

    assert row["fee"] == "12.50"
    assert row["updated_at"] == "2026-11-26 03:00:00.123456+00:00"


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"colour": "red"}, "unknown_column", "unknown column(s) 'colour'"),
        ({"is_sync": True}, "unknown_column", "set by zonesync"),
        ({"merchant_id": None}, "missing_required", "key column 'merchant_id' is missing"),
        ({"merchant_id": 1.5}, "invalid_value", "expected an integer"),
        ({"merchant_id": True}, "invalid_value", "expected an integer"),
        ({"merchant_name": 42}, "invalid_value", "expected text"),
        ({"updated_at": "yesterday"}, "invalid_value", "'updated_at'"),
    ],
)
def test_bad_values_are_refused_naming_record_and_column(change: dict[str, Any], reason: str, words: str) -> None:
    error = refusal([GOOD, {**GOOD, **change}])

    assert error.reason == reason
    assert "record 2" in str(error) and words in str(error) and "merchants" in str(error)


@pytest.mark.parametrize("body", [[], "text", [["not", "an", "object"]], {"merchant_id": 1}])
def test_bodies_that_are_not_records_are_refused(body: Any) -> None:
    with pytest.raises(RecordError) as caught:
        coerce_records(merchant_table(), MERCHANTS, body)

    assert caught.value.reason == "invalid_body"


def test_timestamps_for_columns_without_a_zone_are_utc_wall_clock() -> None:
    table = merchant_table()
    table.c.updated_at.type = sa.DateTime(timezone=False)  # MariaDB DATETIME, PostgreSQL timestamp

    row = coerce_records(table, MERCHANTS, [GOOD])[0]

    assert row["updated_at"] == datetime(2026, 11, 26, 3, 0, 0, 123456)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"fee": "Ana Lim"}, "got a text of 7 character(s), which is not a number"),
        ({"merchant_id": "Ana Lim"}, "expected an integer, got a text of 7 character(s)"),
        ({"merchant_name": 4242.5}, "expected text, got a floating-point number"),
        ({"updated_at": "Ana Lim 2026"}, "got a text of 12 character(s), which the column cannot hold (ValueError)"),
        ({"fee": "4242.123"}, "got 3 digits after the point; the column keeps 2"),
    ],
    ids=["not-a-number", "not-an-integer", "not-text", "not-a-timestamp", "too-many-decimals"],
)
def test_a_refusal_describes_the_value_and_never_quotes_it(change: dict[str, Any], said: str) -> None:
    message = str(refusal({**GOOD, **change}))

    assert said in message
    assert "Ana" not in message and "4242" not in message


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"tax_id": "NPWP-2"}, "'tax_id' stay in the intranet zone"),
        ({"email": "a@b.c", "opened_on": "2026-01-01"}, "'opened_on' stay in the intranet zone"),
        ({"merchant_id": 8}, "cannot be changed by an update"),
        ({"shoe_size": 44}, "unknown column(s) 'shoe_size'"),
    ],
)
def test_an_update_changes_only_columns_the_mapping_carries(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(RecordError) as caught:
        coerce_update(merchant_table(), MERCHANTS, {"merchant_id": 7}, changes)

    assert caught.value.reason == "unknown_column" and words in str(caught.value)


def test_the_carried_columns_are_the_mapped_ones_the_flag_and_the_version() -> None:
    assert set(MERCHANTS.carried_source_columns) == {
        "merchant_id", "merchant_name", "status", "fee", "email", "updated_at", "is_sync"
    }  # fmt: skip
