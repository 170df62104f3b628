"""How a mapping's Pandera model is read: each column's exact polars type (only types carried without loss are
allowed) and the longest text its checks let through, into the target columns a mapping derives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_origin

import polars as pl

from zonesync.schemas.errors import MappingError


@dataclass(frozen=True)
class TargetColumn:
    """One column of the target table, with the source column that feeds it."""

    name: str
    source: str
    dtype: pl.DataType
    nullable: bool
    is_key: bool
    longest: int | None = None  # the most characters a valid text holds (the model's str_length or isin checks)


_SCALAR_DTYPES = (
    pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64,
    pl.Float32, pl.Float64, pl.Boolean, pl.String, pl.Date,
)  # fmt: skip


def longest_text(checks: list[Any]) -> int | None:
    """The most characters a value passing these checks can have, or None when they set no bound."""
    bounds = []
    for check in checks:
        statistics = getattr(check, "statistics", None) or {}
        if check.name == "str_length":
            bound = statistics.get("exact_value") or statistics.get("max_value")
            if isinstance(bound, int):
                bounds.append(bound)
        elif check.name == "isin" and all(isinstance(v, str) for v in statistics.get("allowed_values") or [None]):
            bounds.append(max(len(value) for value in statistics["allowed_values"]))
    return min(bounds, default=None)


def polars_dtype(pandera_dtype: Any, hint: Any) -> pl.DataType:
    """The concrete polars type of a model column; only types that can be carried exactly are allowed."""
    dtype = getattr(pandera_dtype, "type", pandera_dtype)
    if isinstance(dtype, type):
        dtype = dtype()
    if isinstance(dtype, pl.Decimal):
        # pandera turns a bare `pl.Decimal` into Decimal(28, 0): every fraction would then be type_loss.
        if dtype.precision is None or get_origin(hint) is not Annotated:
            raise MappingError("a decimal needs its precision and scale: Annotated[pl.Decimal, 18, 2]")
        return dtype
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime(dtype.time_unit or "us", dtype.time_zone)
    if isinstance(dtype, _SCALAR_DTYPES):
        return dtype
    raise MappingError(f"unsupported column type {dtype}: use integers, floats, bool, text, decimal, date or datetime")
