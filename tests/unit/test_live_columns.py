"""What a live column keeps, from its type as the database reports it: offline (engines never connect).

The rules are written twice (a polars expression for batches, a Python test for a push's values); the tests
here hold both to the same verdicts, value by value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from tests.unit.test_dialects import dialect
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.dialects.column_shapes import ColumnShape, inexact_rows_of

ROW = "row"
T = datetime(2026, 3, 4, 10, 0, 1, 123457, tzinfo=UTC)


def column(sql_type: sa.types.TypeEngine[Any], **table_options: Any) -> sa.Column[Any]:
    table = sa.Table("t", sa.MetaData(), sa.Column("c", sql_type), **table_options)
    return table.c.c


def verdicts(backend: str, sql_type: sa.types.TypeEngine[Any], values: list[Any], dtype: pl.DataType,
             **table_options: Any) -> list[bool]:  # fmt: skip
    """Which values the column alters, by the polars form (a batch of more rows than a push checks one by one);
    asserts that the one-by-one forms (a push's few rows, a pushed value) agree, detail for detail."""
    live = column(sql_type, **table_options)
    d = dialect(backend)
    copies = 100 // len(values) + 1  # beyond the rows a push checks one by one
    batch = pl.DataFrame({"c": values * copies}, schema={"c": dtype}).with_row_index(ROW)
    few = pl.DataFrame({"c": values}, schema={"c": dtype}).with_row_index(ROW)
    polars_found = d.inexact_rows(live.table, batch, ROW).filter(pl.col(ROW) < len(values))  # type: ignore[arg-type]
    python_found = d.inexact_rows(live.table, few, ROW)  # type: ignore[arg-type]
    assert polars_found.rows() == python_found.rows(), "the batch and the one-by-one forms disagree"
    found = set(polars_found[ROW].to_list())
    altered = [position in found for position in range(len(values))]
    one_value = [d.refusal(live, value) is not None for value in values]
    assert altered == one_value, f"batch {altered} and per-value {one_value} disagree"
    return altered


FEES = [Decimal("1.15"), Decimal("1.10"), Decimal("2.00"), Decimal("-2.55"), None, Decimal("123456789012345.99")]


@pytest.mark.parametrize(
    ("backend", "sql_type", "altered"),
    [
        ("postgresql", sa.Numeric(18, 2), [False, False, False, False, False, False]),
        ("postgresql", sa.Numeric(18, 1), [True, False, False, True, False, True]),
        ("postgresql", sa.Numeric(18, 0), [True, True, False, True, False, True]),
        ("postgresql", sa.Numeric(10, 2), [False, False, False, False, False, True]),
        ("postgresql", sa.Numeric(), [False] * 6),  # unconstrained numeric keeps every digit
        ("postgresql", sa.BigInteger(), [True, True, False, True, False, True]),
        ("mariadb", mysql.DECIMAL(18, 1), [True, False, False, True, False, True]),
        ("mariadb", mysql.DECIMAL(18, 0), [True, True, False, True, False, True]),
        ("sqlite", sa.String(20), [False] * 6),  # exact_decimal's text: SQLite keeps what it is given
    ],
)
def test_a_decimal_that_the_live_column_would_round_is_found(backend: str, sql_type: Any, altered: list[bool]) -> None:
    assert verdicts(backend, sql_type, FEES, pl.Decimal(18, 2)) == altered


def test_a_double_column_keeps_only_decimals_with_an_exact_binary_form() -> None:
    values = [Decimal("3.5"), Decimal("1.15"), Decimal("0.1"), Decimal("1234567890.25")]
    assert verdicts("postgresql", postgresql.DOUBLE_PRECISION(), values, pl.Decimal(38, 6)) == [
        False,
        True,
        True,
        False,
    ]


MOMENTS = [T, T.replace(microsecond=123000), T.replace(microsecond=0), None]


@pytest.mark.parametrize(
    ("backend", "sql_type", "altered"),
    [
        ("postgresql", sa.DateTime(timezone=True), [False, False, False, False]),  # timestamptz: microseconds
        ("postgresql", postgresql.TIMESTAMP(timezone=True, precision=0), [True, True, False, False]),
        ("postgresql", postgresql.TIMESTAMP(precision=3), [True, False, False, False]),
        ("mariadb", mysql.DATETIME(fsp=6), [False, False, False, False]),
        ("mariadb", mysql.DATETIME(), [True, True, False, False]),  # DATETIME keeps whole seconds
        ("mariadb", mysql.DATETIME(fsp=3), [True, False, False, False]),
        ("mariadb", mysql.TIMESTAMP(fsp=3), [True, False, False, False]),
    ],
)
def test_a_timestamp_finer_than_the_live_column_is_found(backend: str, sql_type: Any, altered: list[bool]) -> None:
    assert verdicts(backend, sql_type, MOMENTS, pl.Datetime("us", "UTC")) == altered


TEXTS = ["A", "ABC", "AB ", "ABCD", "😀", None]


@pytest.mark.parametrize(
    ("backend", "sql_type", "options", "altered"),
    [
        ("postgresql", sa.String(3), {}, [False, False, False, True, False, False]),
        ("postgresql", sa.CHAR(3), {}, [True, False, False, True, True, False]),  # char(n) pads
        ("mariadb", mysql.VARCHAR(3, charset="utf8mb4"), {}, [False, False, False, True, False, False]),
        ("mariadb", mysql.CHAR(3, charset="utf8mb4"), {}, [False, False, True, True, False, False]),  # trims
        ("mariadb", mysql.VARCHAR(3, charset="utf8mb3"), {}, [False, False, False, True, True, False]),
        ("mariadb", mysql.VARCHAR(3), {"mysql_default charset": "utf8mb3"}, [False, False, False, True, True, False]),
        # reflected through a mariadb:// URL, the table default is filed under mariadb_
        ("mariadb", mysql.VARCHAR(3), {"mariadb_default charset": "utf8mb3"}, [False, False, False, True, True, False]),
        ("mariadb", mysql.VARCHAR(3, collation="utf8mb3_bin"), {}, [False, False, False, True, True, False]),
        ("sqlite", sa.String(3), {}, [False] * 6),  # SQLite keeps any length
    ],
)
def test_a_text_the_live_column_would_alter_is_found(
    backend: str, sql_type: Any, options: dict[str, Any], altered: list[bool]
) -> None:
    assert verdicts(backend, sql_type, TEXTS, pl.String(), **options) == altered


@pytest.mark.parametrize(
    ("backend", "sql_type", "altered"),
    [
        ("postgresql", sa.SmallInteger(), [False, True, True, False]),
        ("postgresql", sa.Integer(), [False, False, True, False]),
        ("mariadb", mysql.TINYINT(unsigned=True), [False, True, True, False]),
        ("mariadb", mysql.MEDIUMINT(), [False, False, True, False]),
        ("mariadb", mysql.BIGINT(), [False, False, False, False]),
    ],
)
def test_an_integer_beyond_the_live_column_is_found(backend: str, sql_type: Any, altered: list[bool]) -> None:
    assert verdicts(backend, sql_type, [7, 40_000, 2**40, None], pl.Int64()) == altered


def test_the_reason_names_the_column_and_its_live_type_never_the_value() -> None:
    live = column(postgresql.NUMERIC(18, 1))
    frame = pl.DataFrame({"c": [Decimal("5.55")]}, schema={"c": pl.Decimal(18, 2)}).with_row_index(ROW)
    (detail,) = dialect("postgresql").inexact_rows(live.table, frame, ROW)["detail"].to_list()  # type: ignore[arg-type]
    assert detail == "column 'c': the live column numeric(18, 1) keeps 1 digit(s) after the point; the value has more"
    assert "5.55" not in detail


@pytest.mark.parametrize(
    ("backend", "sql_type", "dtype", "warned"),
    [
        ("postgresql", sa.Numeric(18, 1), pl.Decimal(18, 2), "keeps 1 digit(s) after the point, the model 2"),
        ("postgresql", sa.Numeric(12, 2), pl.Decimal(18, 2), "keeps 10 digit(s) before the point, the model 16"),
        ("postgresql", sa.Numeric(18, 2), pl.Decimal(18, 2), None),
        ("postgresql", postgresql.TIMESTAMP(timezone=True, precision=0), pl.Datetime("us", "UTC"), "keeps 0 digit"),
        ("postgresql", sa.CHAR(3), pl.String(), "pads shorter texts"),
        ("mariadb", mysql.DATETIME(), pl.Datetime("us", "UTC"), "keeps 0 digit(s) of a second"),
        ("mariadb", mysql.DATETIME(fsp=6), pl.Datetime("us", "UTC"), None),
        ("mariadb", mysql.VARCHAR(10, charset="utf8mb3"), pl.String(), "use utf8mb4"),
        ("mariadb", mysql.DOUBLE(), pl.Decimal(18, 2), "is approximate"),
        # a text: the model's str_length (or isin) bound against the live length
        (
            "postgresql",
            sa.String(50),
            (pl.String(), 120),
            "varchar(50) holds 50 character(s), the model allows up to 120",
        ),
        ("mariadb", mysql.VARCHAR(50, charset="utf8mb4"), (pl.String(), None), "the model allows any length"),
        ("postgresql", sa.String(50), (pl.String(), 50), None),
        ("sqlite", sa.String(50), (pl.String(), None), None),  # SQLite keeps any length
    ],
)
def test_init_names_every_live_column_narrower_than_the_model(
    backend: str, sql_type: Any, dtype: pl.DataType | tuple[pl.DataType, int | None], warned: str | None
) -> None:
    live = column(sql_type)
    model = dtype if isinstance(dtype, tuple) else (dtype, None)
    warnings = dialect(backend).column_warnings(live.table, {"c": model})  # type: ignore[arg-type]
    if warned is None:
        assert warnings == []
    else:
        (warning,) = warnings
        assert warning.startswith("column 'c' of 't': ") and warned in warning


def test_a_shape_with_no_limits_alters_nothing() -> None:
    assert ColumnShape("text").value_alteration("anything at all") is None
    assert ColumnShape("text").rules == ()


def test_a_length_the_model_already_bounds_is_not_scanned_and_a_wider_model_is() -> None:
    """A batch is checked against a live varchar(n) only where the model lets a value be longer than n."""
    frame = pl.DataFrame({"__row": pl.Series([0, 1], dtype=pl.UInt32), "name": ["short", "x" * 12]})
    shapes = {"name": ColumnShape("varchar(10)", length=10)}
    many = pl.concat([frame] * 50).with_columns(pl.int_range(100, dtype=pl.UInt32).alias("__row"))

    assert inexact_rows_of(shapes, many, "__row", {"name": 100})["__row"].to_list() == list(range(1, 100, 2))
    assert inexact_rows_of(shapes, many.filter(pl.col("name") == "short"), "__row", {"name": 10}).is_empty()


def test_the_longest_valid_text_comes_from_the_models_checks() -> None:
    assert MERCHANTS.longest_texts == {"name": 100, "status": 1, "email": 200}
