"""Turn source rows into target rows: rename, drop what the target must not see, cast exactly.

A value that cannot be carried exactly (a decimal with more digits than the target keeps, text that is
not a number, a timestamp that does not parse) is never rounded: its row is marked `type_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.model_columns import TargetColumn

ROW = "__zonesync_row"
_WIDE_DECIMAL = pl.Decimal(38, 18)
_LOSS = "__zonesync_loss"
_NO_LOSSES = pl.DataFrame(schema={ROW: pl.UInt32, "detail": pl.String})
_PLANS: dict[str, tuple[list[pl.Expr], pl.Expr | None]] = {}
_MAX_PLANS = 256


@dataclass(frozen=True)
class Transformed:
    """Target-shaped rows (with their row number in the read batch) and the rows that lost data."""

    frame: pl.DataFrame
    losses: pl.DataFrame  # ROW, detail


def to_target_schema(raw: pl.DataFrame, mapping: SyncMapping) -> Transformed:
    """Rename, drop and cast a read batch to the mapping's model; collect rows whose values would change."""
    converted, loss = _plan(mapping.columns, raw.schema)
    source = raw.with_row_index(ROW)
    if loss is None:
        return Transformed(source.select(converted), _NO_LOSSES.clear())
    shaped = source.select(*converted, loss)
    details = shaped.drop_in_place(_LOSS)  # null where nothing was lost
    if details.null_count() == details.len():
        return Transformed(shaped, _NO_LOSSES.clear())
    losses = pl.DataFrame([shaped.get_column(ROW), details.alias("detail")])
    return Transformed(shaped, losses.filter(pl.col("detail").is_not_null()))


def _plan(columns: tuple[TargetColumn, ...], schema: pl.Schema) -> tuple[list[pl.Expr], pl.Expr | None]:
    """The select that converts a batch of this schema (built once per mapping and schema: a push is a few rows,
    and building the expressions costs more than running them) and the loss detail (null where nothing is lost)."""
    shape = repr((columns, list(schema.items())))
    plan = _PLANS.get(shape)
    if plan is None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[shape] = _build_plan(columns, schema)
    return plan


def _build_plan(columns: tuple[TargetColumn, ...], schema: pl.Schema) -> tuple[list[pl.Expr], pl.Expr | None]:
    converted = [pl.col(ROW)]
    lost_rows, details = [], []
    for column in columns:
        value, lost = _convert(pl.col(column.source), schema[column.source], column)
        converted.append(value.alias(column.name))
        if lost is not None:
            lost_rows.append(lost)
            said = f"{column.name}: value does not fit {column.dtype} exactly (got a {schema[column.source]})"
            details.append(pl.when(lost).then(pl.lit(said)))
    if not lost_rows:
        return converted, None
    detail = pl.concat_str(details, separator="; ", ignore_nulls=True)
    return converted, pl.when(pl.any_horizontal(lost_rows)).then(detail).alias(_LOSS)


def _convert(expr: pl.Expr, dtype: pl.DataType, column: TargetColumn) -> tuple[pl.Expr, pl.Expr | None]:
    """The cast expression and, where the cast can lose information, an expression true for lossy rows."""
    target = column.dtype
    if dtype == target:
        return expr, None
    if isinstance(target, pl.Datetime):
        value = _to_datetime(expr, dtype, target)
        if dtype == pl.String:
            return value, _lost(expr, value) | _finer_than(expr, target.time_unit or "us")
        if isinstance(dtype, pl.Datetime):  # a coarser target unit must not drop digits
            unit = dtype.time_unit or "us"
            return value, _lost(expr, value) | (value.dt.epoch(unit) != expr.dt.epoch(unit)).fill_null(False)
    elif dtype == pl.String and isinstance(target, pl.Decimal):
        value = expr.str.strip_chars().cast(target, strict=False)
        wide = expr.str.strip_chars().cast(_WIDE_DECIMAL, strict=False)
        return value, _lost(expr, value) | (value.cast(_WIDE_DECIMAL) != wide).fill_null(False)
    elif dtype == pl.String and target == pl.Date:
        value = expr.str.to_date(strict=False)
    elif target == pl.Boolean and dtype.is_integer():
        value = expr.cast(pl.Boolean, strict=False)
        return value, _lost(expr, value) | ~expr.is_in([0, 1]).fill_null(True)
    else:
        value = expr.cast(target, strict=False)
    lost = _lost(expr, value)
    if dtype == pl.String and target.is_float():
        lost = lost | (value.is_infinite() & ~expr.str.to_lowercase().str.contains("inf")).fill_null(False)
    if dtype.is_numeric() and target.is_numeric():
        lost = lost | (value.cast(dtype, strict=False) != expr).fill_null(False)
    return value, lost


def _lost(original: pl.Expr, converted: pl.Expr) -> pl.Expr:
    return converted.is_null() & original.is_not_null()


_FRACTION_DIGITS = {"ms": 3, "us": 6, "ns": 9}


def _finer_than(text: pl.Expr, unit: str) -> pl.Expr:
    """Text timestamps with non-zero digits beyond the target's precision (parsing would drop them)."""
    digits = _FRACTION_DIGITS[unit]
    return text.str.contains(rf"\.\d{{{digits}}}\d*[1-9]").fill_null(False)


def _to_datetime(expr: pl.Expr, dtype: pl.DataType, target: pl.Datetime) -> pl.Expr:
    """Any timestamp form to the target's unit and zone; naive values are taken as UTC (the zones' clock)."""
    unit = target.time_unit or "us"
    if dtype == pl.String:
        # Explicit formats: polars infers one format per column, which fails on mixed offset/naive text.
        text = expr.str.strip_chars().str.replace("T", " ", literal=True).str.replace(r"Z$", "+00:00")
        with_offset = text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%z", time_unit=unit, time_zone="UTC", strict=False)
        naive = text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit=unit, strict=False)
        aware = pl.coalesce(with_offset, naive.dt.replace_time_zone("UTC"))
    elif isinstance(dtype, pl.Datetime):
        aware = expr.cast(pl.Datetime(unit, dtype.time_zone))
        if dtype.time_zone is None:
            aware = aware.dt.replace_time_zone("UTC")
    else:
        aware = expr.cast(pl.Datetime(unit, "UTC"), strict=False)
    if target.time_zone is None:
        return aware.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return aware.dt.convert_time_zone(target.time_zone)
