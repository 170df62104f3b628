"""to_target_schema (exact data): rename, drop, and cast exactly; anything lossy is reported, never rounded."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
import pytest

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.sync.transform import ROW, to_target_schema


class Shop(pa.DataFrameModel):
    shop_id: int
    name: str
    fee: Annotated[pl.Decimal, 18, 2]


class Amount(pa.DataFrameModel):
    id: int
    value: Annotated[pl.Decimal, 18, 2] = pa.Field(nullable=True)


class Stamp(pa.DataFrameModel):
    id: int
    value: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=True)


class Flag(pa.DataFrameModel):
    id: int
    value: bool = pa.Field(nullable=True)


class Ratio(pa.DataFrameModel):
    id: int
    value: float = pa.Field(nullable=True)


class Count(pa.DataFrameModel):
    id: int
    value: int = pa.Field(nullable=True)


class Label(pa.DataFrameModel):
    id: int
    value: str = pa.Field(nullable=True)


def mapping_for(model: type[pa.DataFrameModel], key: str = "id", **extra: Any) -> SyncMapping:
    return SyncMapping(
        name="unit", direction="intranet_to_internet", source_table="src", target_table="dst",
        keys=(key,), model=model, **extra,
    )  # fmt: skip


SHOPS = mapping_for(Shop, "shop_id", renames={"shop_name": "name"})
AMOUNT, STAMP, FLAG, RATIO, COUNT, LABEL = map(mapping_for, (Amount, Stamp, Flag, Ratio, Count, Label))
DType = pl.DataType | type[pl.DataType] | None
UTC_2024 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def convert(mapping: SyncMapping, values: list[Any], dtype: DType = None) -> tuple[list[Any], set[int]]:
    """The converted `value` column, and the row numbers reported lossy."""
    raw = pl.DataFrame({"id": range(len(values)), "value": pl.Series(values, dtype=dtype)})
    result = to_target_schema(raw, mapping)
    return result.frame["value"].to_list(), set(result.losses[ROW].to_list())


def only(mapping: SyncMapping, value: Any, dtype: DType = None) -> tuple[Any, bool]:
    """One value converted, and whether it was reported lossy."""
    values, lossy = convert(mapping, [value], dtype)
    return values[0], lossy == {0}


# -- shape ---------------------------------------------------------------------------------------


def shop_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {"shop_id": [1, 2], "shop_name": ["Ümlaut & Co", "B"], "fee": ["1.50", "2"], "tax_id": ["SECRET-1", "SECRET-2"]}
    )


def test_columns_are_renamed_to_the_model_in_model_order() -> None:
    frame = to_target_schema(shop_rows(), SHOPS).frame
    assert frame.columns == [ROW, "shop_id", "name", "fee"]
    assert frame["name"].to_list() == ["Ümlaut & Co", "B"]


def test_source_columns_outside_the_model_are_dropped() -> None:
    frame = to_target_schema(shop_rows(), SHOPS).frame
    assert "tax_id" not in frame.columns
    assert "SECRET-1" not in str(frame.rows())


def test_row_numbers_of_the_read_batch_are_kept() -> None:
    raw = pl.DataFrame({"id": [30, 10, 20, 40], "value": ["1.00", "oops", "3.00", "1.001"]})
    result = to_target_schema(raw, AMOUNT)
    assert result.frame[ROW].to_list() == [0, 1, 2, 3]
    assert result.frame["id"].to_list() == [30, 10, 20, 40]
    assert sorted(result.losses[ROW].to_list()) == [1, 3]


def test_a_clean_batch_reports_no_losses() -> None:
    result = to_target_schema(shop_rows(), SHOPS)
    assert result.losses.is_empty()
    assert result.losses.columns == [ROW, "detail"]


def test_loss_detail_names_the_column_and_the_type() -> None:
    result = to_target_schema(pl.DataFrame({"id": [1], "value": ["1.234"]}), AMOUNT)
    detail = result.losses["detail"][0]
    assert detail.startswith("value:")
    assert "Decimal" in detail


def test_every_lossy_column_of_a_row_is_in_one_detail() -> None:
    raw = pl.DataFrame({"shop_id": [2.5], "shop_name": ["x"], "fee": ["abc"]})
    result = to_target_schema(raw, SHOPS)
    assert result.losses.height == 1
    assert "shop_id:" in result.losses["detail"][0]
    assert "fee:" in result.losses["detail"][0]


# -- decimals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.34", Decimal("12.34")),
        ("7", Decimal("7.00")),
        (" 7.5 ", Decimal("7.50")),
        ("-0.01", Decimal("-0.01")),
        ("1.230", Decimal("1.23")),
        ("9999999999999999.99", Decimal("9999999999999999.99")),
        ("123456789012345.67", Decimal("123456789012345.67")),
    ],
)
def test_decimal_text_is_carried_exactly(text: str, expected: Decimal) -> None:
    value, lossy = only(AMOUNT, text)
    assert value == expected
    assert str(value) == str(expected)
    assert not lossy


@pytest.mark.parametrize(
    "text",
    ["1.234", "0.001", "12345678901234567.00", "99999999999999999", "abc", "", "1,50", "12.3.4"],
    ids=["3-decimals", "tiny", "overflow", "overflow-int", "not-a-number", "empty", "comma", "two-dots"],
)
def test_decimal_text_that_does_not_fit_is_type_loss(text: str) -> None:
    _, lossy = only(AMOUNT, text)
    assert lossy


@pytest.mark.parametrize(
    ("source", "expected"),
    [("12.3400000000", "12.34"), ("-5.1000000000", "-5.10"), ("9999999999999999.9900000000", "9999999999999999.99")],
)
def test_wide_decimal_source_that_fits_is_exact(source: str, expected: str) -> None:
    value, lossy = only(AMOUNT, Decimal(source), pl.Decimal(38, 10))
    assert value == Decimal(expected)
    assert not lossy


@pytest.mark.parametrize("source", ["1.2345000000", "0.0000000001", "12345678901234567.0000000000"])
def test_wide_decimal_source_that_does_not_fit_is_type_loss(source: str) -> None:
    _, lossy = only(AMOUNT, Decimal(source), pl.Decimal(38, 10))
    assert lossy


# -- numbers and booleans --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "dtype", "expected"),
    [("1.5", pl.String, 1.5), ("-2.25e3", pl.String, -2250.0), (3, pl.Int64, 3.0), (2**53, pl.Int64, 2.0**53)],
)
def test_float_targets_take_numbers_that_fit(source: Any, dtype: pl.DataType, expected: float) -> None:
    value, lossy = only(RATIO, source, dtype)
    assert value == expected
    assert not lossy


@pytest.mark.parametrize(
    ("source", "dtype"),
    [("abc", pl.String), (2**53 + 1, pl.Int64), ("1e400", pl.String)],
    ids=["not-a-number", "int-beyond-float-precision", "overflows-to-infinity"],
)
def test_float_targets_refuse_values_that_change(source: Any, dtype: pl.DataType) -> None:
    _, lossy = only(RATIO, source, dtype)
    assert lossy


@pytest.mark.parametrize(
    ("source", "dtype", "lossy"),
    [(3.0, pl.Float64, False), (2.5, pl.Float64, True), (1e20, pl.Float64, True), ("12", pl.String, False)],
)
def test_integer_targets_refuse_fractions_and_overflow(source: Any, dtype: pl.DataType, lossy: bool) -> None:
    value, was_lossy = only(COUNT, source, dtype)
    assert was_lossy == lossy
    if not lossy:
        assert value == int(float(source))


def test_zero_and_one_become_booleans() -> None:
    values, lossy = convert(FLAG, [0, 1, None], pl.Int64)
    assert values == [False, True, None]
    assert lossy == set()


@pytest.mark.parametrize("source", [2, -1, 10])
def test_other_integers_are_not_booleans(source: int) -> None:
    _, lossy = only(FLAG, source, pl.Int64)
    assert lossy


# -- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T05:04:05+02:00", UTC_2024),
        ("2024-01-01T22:34:05-04:30", UTC_2024),
        ("2024-01-02T03:04:05Z", UTC_2024),
        ("2024-01-02 03:04:05+00:00", UTC_2024),
        ("2024-01-02 03:04:05", UTC_2024),
        ("2024-01-02T03:04:05", UTC_2024),
        (" 2024-01-02 03:04:05.123456Z ", UTC_2024.replace(microsecond=123456)),
        ("2024-01-02 03:04:05.5", UTC_2024.replace(microsecond=500000)),
        ("2024-01-02 03:04:05.1234560", UTC_2024.replace(microsecond=123456)),
    ],
    ids=["+2h", "-4h30", "zulu", "utc-offset", "naive-space", "naive-t", "micro-padded", "tenth", "7th-digit-0"],
)
def test_timestamp_text_becomes_the_same_instant_in_utc(text: str, expected: datetime) -> None:
    value, lossy = only(STAMP, text)
    assert value == expected
    assert value.utcoffset().total_seconds() == 0
    assert not lossy


@pytest.mark.parametrize(
    "text",
    ["2024-01-02 03:04:05.1234561", "2024-01-02 03:04:05.123456789", "not a time", "2024-13-02 03:04:05", "yesterday"],
    ids=["7th-digit", "nanoseconds", "garbage", "month-13", "word"],
)
def test_timestamp_text_that_cannot_be_kept_exactly_is_type_loss(text: str) -> None:
    _, lossy = only(STAMP, text)
    assert lossy


def test_naive_datetimes_are_taken_as_utc() -> None:
    value, lossy = only(STAMP, datetime(2024, 1, 2, 3, 4, 5, 6), pl.Datetime("us"))
    assert value == UTC_2024.replace(microsecond=6)
    assert not lossy


def test_zoned_datetimes_are_converted_to_utc() -> None:
    berlin = pl.Series([datetime(2024, 7, 1, 12), datetime(2024, 1, 1, 12)]).dt.replace_time_zone("Europe/Berlin")
    raw = pl.DataFrame({"id": [1, 2], "value": berlin})
    frame = to_target_schema(raw, STAMP).frame
    assert frame["value"].to_list() == [datetime(2024, 7, 1, 10, tzinfo=UTC), datetime(2024, 1, 1, 11, tzinfo=UTC)]
    assert frame.schema["value"] == pl.Datetime("us", "UTC")


def test_nanosecond_datetimes_with_sub_microsecond_digits_are_type_loss() -> None:
    nanos = pl.Series(["2024-01-02 03:04:05.123456789"]).str.to_datetime(time_unit="ns")
    result = to_target_schema(pl.DataFrame({"id": [1], "value": nanos}), STAMP)
    assert result.losses[ROW].to_list() == [0]


def test_nanosecond_datetimes_on_whole_microseconds_are_exact() -> None:
    nanos = pl.Series(["2024-01-02 03:04:05.123456"]).str.to_datetime(time_unit="ns")
    result = to_target_schema(pl.DataFrame({"id": [1], "value": nanos}), STAMP)
    assert result.frame["value"].to_list() == [UTC_2024.replace(microsecond=123456)]
    assert result.losses.is_empty()


# -- nulls ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "dtype"),
    [
        (AMOUNT, pl.String),
        (AMOUNT, pl.Decimal(38, 10)),
        (STAMP, pl.String),
        (STAMP, pl.Datetime("us")),
        (FLAG, pl.Int64),
        (RATIO, pl.String),
        (COUNT, pl.Float64),
        (LABEL, pl.String),
    ],
    ids=["decimal-text", "decimal", "time-text", "datetime", "bool", "float", "int", "text"],
)
def test_nulls_stay_null_without_a_loss(mapping: SyncMapping, dtype: pl.DataType) -> None:
    values, lossy = convert(mapping, [None, None], dtype)
    assert values == [None, None]
    assert lossy == set()


def test_text_keeps_every_unicode_character() -> None:
    text = "Zürich 😀 \u2115 \u200b 日本"
    value, lossy = only(LABEL, text)
    assert value == text
    assert not lossy


def test_a_type_loss_says_what_the_value_was_and_what_it_did_not_fit_never_the_value() -> None:
    raw = pl.DataFrame({"id": [0], "value": pl.Series([Decimal("8675309.4142")], dtype=pl.Decimal(38, 10))})

    [detail] = to_target_schema(raw, AMOUNT).losses["detail"].to_list()

    assert (
        detail
        == "value: value does not fit Decimal(precision=18, scale=2) exactly (got a Decimal(precision=38, scale=10))"
    )
    assert "8675309" not in detail
