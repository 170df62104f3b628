"""split_valid: bad rows are split off with a readable reason, never dropped."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandera.polars as pa
import polars as pl
import pytest

from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.sync.rejects import REJECT_SCHEMA
from zonesync.tasks.sync.transform import ROW
from zonesync.tasks.sync.validate import split_valid

GOOD = {
    "merchant_id": 1,
    "name": "Corner Shop",
    "status": "A",
    "fee": Decimal("1.50"),
    "email": None,
    "updated_at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def batch(*changes: dict[str, Any], mapping: SyncMapping = MERCHANTS, good: dict[str, Any] = GOOD) -> pl.DataFrame:
    """A target-shaped batch (with ROW): one row per `changes`, each a good row with some values replaced."""
    schema = {column.name: column.dtype for column in mapping.columns}
    rows = [good | {key: index + 1 for key in mapping.keys if key not in change} | change
            for index, change in enumerate(changes)]  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row").with_row_index(ROW)


def rejected_by_row(result: Any) -> dict[int, tuple[str, str]]:
    return {row: (reason, detail) for row, reason, detail in result.rejected.iter_rows()}


def test_valid_rows_pass_untouched() -> None:
    frame = batch({}, {"email": "a@example.com"}, {"status": "I", "fee": Decimal("0.00")})
    result = split_valid(frame, MERCHANTS)
    assert result.valid.equals(frame)
    assert result.rejected.is_empty()
    assert result.rejected.schema == pl.Schema(REJECT_SCHEMA)


@pytest.mark.parametrize(
    ("change", "column", "check", "got"),
    [
        ({"status": "Z"}, "status", "isin", " (got 1 character(s))"),
        ({"name": "x" * 101}, "name", "str_length", " (got 101 character(s))"),
        ({"name": ""}, "name", "str_length", " (got 0 character(s))"),
        ({"fee": Decimal("-1.00")}, "fee", "greater_than_or_equal_to(0)", ""),
        ({"name": None}, "name", "not_nullable", " (got null)"),
        ({"updated_at": None}, "updated_at", "not_nullable", " (got null)"),
    ],
    ids=["isin", "too-long", "empty", "negative-fee", "null-name", "null-timestamp"],
)
def test_invalid_rows_are_rejected_with_a_readable_detail_that_never_quotes_the_value(
    change: dict[str, Any], column: str, check: str, got: str
) -> None:
    result = split_valid(batch({}, change), MERCHANTS)
    assert result.valid[ROW].to_list() == [0]
    reason, detail = rejected_by_row(result)[1]
    assert reason == "validation"
    assert detail.startswith(f"{column}: ") and detail.endswith(got)
    assert check in detail
    assert not any(str(value) in detail for value in change.values() if value)  # a length at most, never a value


def test_every_failed_check_of_a_row_is_in_one_reject() -> None:
    result = split_valid(batch({"status": "Z", "fee": Decimal("-2.00")}), MERCHANTS)
    assert result.rejected.height == 1
    _, detail = rejected_by_row(result)[0]
    assert "status: isin" in detail
    assert "fee: greater_than_or_equal_to" in detail


def test_a_long_value_is_described_by_its_length() -> None:
    result = split_valid(batch({"name": "y" * 500}), MERCHANTS)
    _, detail = rejected_by_row(result)[0]
    assert detail == "name: str_length(1, 100) (got 500 character(s))"


def test_every_copy_of_a_duplicate_key_is_rejected() -> None:
    frame = batch({"merchant_id": 7}, {"merchant_id": 8}, {"merchant_id": 7, "name": "Other"}, {"merchant_id": 9})
    result = split_valid(frame, MERCHANTS)
    assert result.valid["merchant_id"].to_list() == [8, 9]
    rejected = rejected_by_row(result)
    assert sorted(rejected) == [0, 2]
    assert {reason for reason, _ in rejected.values()} == {"duplicate_key"}


class RegionalMerchant(pa.DataFrameModel):
    region: str
    merchant_id: int
    name: str


REGIONAL = SyncMapping(
    name="regional",
    direction="intranet_to_internet",
    source_table="merchant",
    target_table="merchant",
    keys=("region", "merchant_id"),
    model=RegionalMerchant,
)


def test_composite_keys_are_duplicates_only_when_every_part_repeats() -> None:
    good = {"region": "EU", "merchant_id": 1, "name": "n"}
    frame = batch(
        {"region": "EU", "merchant_id": 1},
        {"region": "US", "merchant_id": 1},
        {"region": "EU", "merchant_id": 2},
        {"region": "EU", "merchant_id": 1},
        mapping=REGIONAL,
        good=good,
    )
    result = split_valid(frame, REGIONAL)
    assert result.valid[ROW].to_list() == [1, 2]
    assert rejected_by_row(result) == {
        0: ("duplicate_key", "key appears more than once"),
        3: ("duplicate_key", "key appears more than once"),
    }


def test_rejects_after_duplicates_point_at_their_own_rows() -> None:
    frame = batch({"merchant_id": 50}, {"merchant_id": 50}, {}, {"status": "Q"}, {})
    result = split_valid(frame, MERCHANTS)
    rejected = rejected_by_row(result)
    assert rejected[3][0] == "validation"
    assert rejected[3][1].startswith("status: isin")
    assert result.valid[ROW].to_list() == [2, 4]


def test_no_row_is_lost_or_counted_twice() -> None:
    frame = batch(
        {}, {"status": "Z"}, {"merchant_id": 40}, {"merchant_id": 40, "status": "Z"}, {"name": None},
        {"email": "ok@example.com"}, {"fee": Decimal("-0.01"), "name": "x" * 200},
    )  # fmt: skip
    result = split_valid(frame, MERCHANTS)
    valid_rows = result.valid[ROW].to_list()
    rejected_rows = result.rejected[ROW].to_list()
    assert len(valid_rows) + len(rejected_rows) == frame.height
    assert sorted(valid_rows + rejected_rows) == list(range(frame.height))
    assert sorted(valid_rows) == [0, 5]
