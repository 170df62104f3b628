"""What a live column keeps — its shape, read from the table as it is now — and the rules by which it would alter
a value: scale, precision, integer range, fractional seconds, length, padding, trailing blanks, characters beyond
its character set.

The rules are the same for every database; each database only describes its columns (`column_shape`). Each rule
is written twice, side by side: as a polars expression for batches and as a Python test for the few rows of a
push or an update (building the expressions would cost a push more than its statements). A rule's words never
quote a value: they reach logs, artifacts and HTTP answers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal
from types import MappingProxyType
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa

Kind = Literal["decimal", "integer", "timestamp", "text"]
MICROSECOND_DIGITS = 6
_CHECKED_ONE_BY_ONE = 64  # up to this many rows, values are checked in Python (a push); more, by polars
NO_BOUNDS: Mapping[str, int] = MappingProxyType({})
_EXACT = Context(prec=2000)  # normalizes any decimal a column holds without rounding it
_ASTRAL = r"[\x{10000}-\x{10FFFF}]"  # characters outside the Basic Multilingual Plane (4 bytes in UTF-8)


@dataclass(frozen=True)
class Rule:
    """One way a column alters a value of one kind: for a batch (`altered`) and for one value (`alters`)."""

    kind: Kind
    altered: Callable[[pl.Expr, pl.DataType], pl.Expr]
    alters: Callable[[Any], bool]
    why: str
    # Whether a batch column of this type can hold a value the rule catches (a decimal(18,2) cannot have more
    # decimals than a numeric(18,2) keeps): the usual batch is then not scanned for it.
    needed: Callable[[pl.DataType], bool] = lambda _dtype: True
    # A text rule that only a value longer than this catches (a valid value no longer cannot meet it).
    longer_than: int | None = None


@dataclass(frozen=True)
class ColumnShape:
    """What a live column keeps of a value (None: no limit of that kind)."""

    type_name: str  # as the database spells it, for messages
    precision: int | None = None  # digits in all, of an exact numeric
    scale: int | None = None  # digits after the point, of an exact numeric (0 for integers)
    approximate: bool = False  # a binary floating-point number: only decimals with an exact binary form fit
    fraction_digits: int | None = None  # digits of a timestamp's seconds' fraction
    length: int | None = None  # characters a text holds
    padded: bool = False  # fixed-length text padded with blanks to its length (PostgreSQL char(n))
    trims_trailing_blanks: bool = False  # fixed-length text given back without trailing blanks (MariaDB CHAR)
    astral: bool = True  # holds characters outside the Basic Multilingual Plane (MariaDB utf8mb3 does not)
    integer_range: tuple[int, int] | None = None

    @functools.cached_property
    def rules(self) -> tuple[Rule, ...]:
        """Every way this column alters a value (built once per shape: a push asks for them per value)."""
        return (*self._numeric_rules(), *self._time_rules(), *self._text_rules())

    def _numeric_rules(self) -> list[Rule]:
        found = []
        scale = 0 if self.integer_range is not None else self.scale
        if scale is not None:
            found.append(Rule("decimal", lambda v, t: v.cast(pl.Decimal(38, scale)).cast(t) != v,
                              lambda v: bool(v) and -int(v.normalize(_EXACT).as_tuple().exponent) > scale,
                              f"keeps {scale} digit(s) after the point; the value has more",
                              lambda t: _scale(t) > scale))  # fmt: skip
        if self.precision is not None and self.scale is not None:
            whole = self.precision - self.scale
            limit = Decimal(10) ** whole
            found.append(Rule("decimal", lambda v, _: v.abs() >= pl.lit(limit, pl.Decimal(38, 0)),
                              lambda v: abs(v) >= limit,
                              f"keeps {whole} digit(s) before the point; the value has more",
                              lambda t: _whole_digits(t) > whole))  # fmt: skip
        if self.approximate:
            found.append(Rule("decimal", lambda v, _: v.map_elements(_not_binary, pl.Boolean), _not_binary,
                              "is binary floating point: the value has no exact binary form"))  # fmt: skip
        if self.integer_range is not None:
            low, high = self.integer_range
            for kind in ("integer", "decimal"):
                found.append(Rule(kind, lambda v, _: (v < low) | (v > high), lambda v: not low <= v <= high,
                                  f"holds integers from {low} to {high} only",
                                  lambda t: not low <= _lowest(t) <= _highest(t) <= high))  # fmt: skip
        return found

    def _time_rules(self) -> list[Rule]:
        if self.fraction_digits is None or self.fraction_digits >= MICROSECOND_DIGITS:
            return []
        unit = 10 ** (MICROSECOND_DIGITS - self.fraction_digits)
        return [Rule("timestamp", lambda v, _: v.dt.microsecond() % unit != 0, lambda v: v.microsecond % unit != 0,
                     f"keeps {self.fraction_digits} digit(s) of a second; the value has more")]  # fmt: skip

    def _text_rules(self) -> list[Rule]:
        found = []
        length = self.length
        if length is not None:
            found.append(Rule("text", lambda v, _: v.str.len_chars() > length, lambda v: len(v) > length,
                              f"holds {length} character(s); the text is longer", longer_than=length))  # fmt: skip
            if self.padded:
                found.append(Rule("text", lambda v, _: v.str.len_chars() < length, lambda v: len(v) < length,
                                  f"pads a shorter text with blanks to {length} character(s)"))  # fmt: skip
        if self.trims_trailing_blanks:
            found.append(Rule("text", lambda v, _: v.str.ends_with(" "), lambda v: v.endswith(" "),
                              "gives a text back without its trailing blanks"))  # fmt: skip
        if not self.astral:
            found.append(Rule("text", lambda v, _: v.str.contains(_ASTRAL), lambda v: any(ord(c) > 0xFFFF for c in v),
                              "cannot hold characters outside the BMP (emoji, some CJK)"))  # fmt: skip
        return found

    def value_alteration(self, value: Any) -> str | None:
        """How this column would alter one value, or None."""
        kind = _kind_of_value(value)
        if kind is None:
            return None
        found = [rule.why for rule in self.rules if rule.kind == kind and rule.alters(value)]
        return f"the live column {self.type_name} {'; '.join(found)}" if found else None

    def narrower_than(self, dtype: pl.DataType, longest: int | None = None) -> str | None:
        """How this column is narrower than a model type (for a text, whose checks let `longest` characters through;
        None: no bound), or None (what `zonesync init` reports before any run)."""
        if isinstance(dtype, pl.Decimal):
            scale, whole = dtype.scale or 0, (dtype.precision or 38) - (dtype.scale or 0)
            if self.integer_range is not None and scale:
                return f"{self.type_name} keeps no digit after the point, the model {scale}"
            if self.scale is not None and self.scale < scale:
                return f"{self.type_name} keeps {self.scale} digit(s) after the point, the model {scale}"
            kept = None if self.precision is None or self.scale is None else self.precision - self.scale
            if kept is not None and kept < whole:
                return f"{self.type_name} keeps {kept} digit(s) before the point, the model {whole}"
            if self.approximate:
                return f"{self.type_name} is approximate: a decimal without an exact binary form (0.1) cannot be kept"
        fraction = self.fraction_digits
        if isinstance(dtype, pl.Datetime) and fraction is not None and fraction < MICROSECOND_DIGITS:
            return f"{self.type_name} keeps {self.fraction_digits} digit(s) of a second, the model microseconds"
        if dtype == pl.String and self.padded:
            return f"{self.type_name} pads shorter texts with blanks: only texts of exactly {self.length} fit"
        if dtype == pl.String and not self.astral:
            return f"{self.type_name} cannot hold characters outside the BMP (emoji): use utf8mb4"
        if dtype == pl.String and self.length is not None and (longest is None or longest > self.length):
            allows = f"up to {longest}" if longest is not None else "any length (no str_length check)"
            return f"{self.type_name} holds {self.length} character(s), the model allows {allows}"
        return None


def _scale(dtype: pl.DataType) -> int:
    return dtype.scale or 0 if isinstance(dtype, pl.Decimal) else 0


def _whole_digits(dtype: pl.DataType) -> int:
    if isinstance(dtype, pl.Decimal):
        return (dtype.precision or 38) - (dtype.scale or 0)
    return len(str(_highest(dtype)))


_POLARS_INTEGER_BITS: dict[type[pl.DataType], int] = {
    pl.Int8: 8, pl.Int16: 16, pl.Int32: 32, pl.Int64: 64, pl.UInt8: 8, pl.UInt16: 16, pl.UInt32: 32, pl.UInt64: 64,
}  # fmt: skip


def _lowest(dtype: pl.DataType) -> int | Decimal:
    """The least value a column of this type can hold (a decimal's by its digits)."""
    if isinstance(dtype, pl.Decimal):
        return -_highest(dtype)
    bits = _POLARS_INTEGER_BITS.get(type(dtype), 128)
    return 0 if dtype.is_unsigned_integer() else -(2 ** (bits - 1))


def _highest(dtype: pl.DataType) -> int | Decimal:
    """The greatest value a column of this type can hold (a decimal's by its digits)."""
    if isinstance(dtype, pl.Decimal):
        return Decimal(10) ** _whole_digits(dtype) - 1
    bits = _POLARS_INTEGER_BITS.get(type(dtype), 128)
    return 2**bits - 1 if dtype.is_unsigned_integer() else 2 ** (bits - 1) - 1


def _not_binary(value: Decimal | None) -> bool:
    """Whether a double would store another number than `value` (3.5 it keeps; 1.15 it cannot)."""
    return value is not None and Decimal(float(value)) != value


def _kind_of_dtype(dtype: pl.DataType) -> Kind | None:
    if isinstance(dtype, pl.Decimal):
        return "decimal"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if dtype == pl.String:
        return "text"
    return "integer" if dtype.is_integer() else None


def _kind_of_value(value: Any) -> Kind | None:
    if isinstance(value, Decimal):
        return "decimal" if value.is_finite() else None
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, str):
        return "text"
    return "integer" if isinstance(value, int) and not isinstance(value, bool) else None


def inexact_rows_of(
    shapes: dict[str, ColumnShape], frame: pl.DataFrame, row: str, longest: Mapping[str, int] = NO_BOUNDS
) -> pl.DataFrame:
    """The rows of `frame` (by its `row` column) that columns of these shapes would store altered, with why: value
    by value for a few rows (a push: building the expressions would cost more than the push's statements), as
    one polars select for a batch. `longest`: the most characters a column's values can have (the model's checks
    passed): a length rule they cannot meet is not scanned for."""
    if frame.height <= _CHECKED_ONE_BY_ONE:
        return _inexact_one_by_one(shapes, frame, row)
    checks = []
    for name, dtype in frame.schema.items():
        shape, kind = shapes.get(name), _kind_of_dtype(dtype)
        if shape is None or kind is None:
            continue
        found = [(rule.altered(pl.col(name), dtype).fill_null(False), rule.why) for rule in shape.rules
                 if rule.kind == kind and _scanned(rule, dtype, longest.get(name))]  # fmt: skip
        checks += [(altered, f"column {name!r}: the live column {shape.type_name} {why}") for altered, why in found]
    if not checks or frame.is_empty():
        return pl.DataFrame(schema={row: pl.UInt32, "detail": pl.String})
    detail = pl.concat_str([pl.when(altered).then(pl.lit(why)) for altered, why in checks], separator="; ",
                           ignore_nulls=True)  # fmt: skip
    found_rows = frame.select(pl.col(row), detail.alias("detail"))
    return found_rows.filter(pl.col("detail").is_not_null() & (pl.col("detail") != ""))


def _scanned(rule: Rule, dtype: pl.DataType, longest: int | None) -> bool:
    """Whether a batch column of `dtype` whose values have at most `longest` characters can meet the rule."""
    if longest is not None and rule.longer_than is not None and longest <= rule.longer_than:
        return False
    return rule.needed(dtype)


def _inexact_one_by_one(shapes: dict[str, ColumnShape], frame: pl.DataFrame, row: str) -> pl.DataFrame:
    checked = [name for name in frame.columns if name in shapes and shapes[name].rules]
    found = []
    for values in frame.select(row, *checked).iter_rows():
        details = [
            f"column {name!r}: {altered}"
            for name, value in zip(checked, values[1:], strict=True)
            if value is not None and (altered := shapes[name].value_alteration(value))
        ]
        if details:
            found.append((values[0], "; ".join(details)))
    return pl.DataFrame(found, schema={row: pl.UInt32, "detail": pl.String}, orient="row")


_INTEGER_BITS = {sa.SmallInteger: 16, sa.BigInteger: 64, sa.Integer: 32}


def integer_range(
    sql_type: sa.types.TypeEngine[Any], *, unsigned: bool = False, bits: int | None = None
) -> tuple[int, int] | None:
    """The values of a SQL integer type of SQLAlchemy's generic kinds (or of `bits` bits, a database's own kind)."""
    bits = bits or next((bits for kind, bits in _INTEGER_BITS.items() if isinstance(sql_type, kind)), None)
    if bits is None:
        return None
    return (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
