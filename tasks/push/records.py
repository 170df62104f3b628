"""Records sent by applications (JSON objects or dicts, source column names) made ready for the source table.

Every value is checked against its column before anything is written: a value the column cannot hold
exactly (a decimal with more digits than its scale, a timestamp finer than a microsecond or outside the
years 1-9999 in UTC, a float for an integer, a decimal a SQLite NUMERIC column would keep as a float) is
refused with a message naming the record and the column, never rounded.

A message describes the refused value by its kind and size, never by its content: it reaches an HTTP answer, a
log line and Prefect, where record values must not go (the caller has the record; the column names it).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import sqlalchemy as sa

from zonesync.schemas.errors import TerminalSyncError
from zonesync.schemas.mapping import SyncMapping

# What the database can refuse beyond the column's declared type (tasks/dialects: `Dialect.refusal`).
Refusal = Callable[[sa.Column[Any], Any], str | None]
_BAD_VALUE = (ValueError, TypeError, ArithmeticError)  # ArithmeticError: decimal.InvalidOperation, OverflowError
_INT64 = range(-(2**63), 2**63)
_FRACTION = re.compile(r"\d:\d\d[.,](\d+)")  # the seconds' fraction of an ISO-8601 time


class RecordError(TerminalSyncError):
    """A record that cannot be written as sent (the caller's mistake: HTTP 422)."""

    def __init__(self, message: str, *, mapping: str, reason: str) -> None:
        super().__init__(message, mapping=mapping)
        self.reason = reason


def _no_refusal(_column: sa.Column[Any], _value: Any) -> None:
    return None


def parse_json(text: str | bytes) -> Any:
    """JSON as applications send records: numbers as exact decimals (never floats); NaN, Infinity and runaway
    nesting refused. A ValueError says what is wrong in one line."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # leave out Python's advice about its own limit
            raise ValueError(f"a number has more than {sys.get_int_max_str_digits()} digits") from None
        raise ValueError(str(exc)[:200]) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def json_friendly(value: Any) -> Any:
    """A key value in a form JSON can give back: text for what JSON has no type for (decimals, timestamps)."""
    return value if value is None or isinstance(value, str | int | float) else str(value)


def coerce_records(
    table: sa.Table, mapping: SyncMapping, records: object, refusal: Refusal = _no_refusal
) -> list[dict[str, Any]]:
    """Check and convert records for an INSERT into the source table (flag set false)."""
    if not isinstance(records, Sequence) or isinstance(records, str | bytes) or not records:
        raise RecordError("expected one record (an object) or a non-empty list of records", mapping=mapping.name,
                          reason="invalid_body")  # fmt: skip
    declared = {column.source: column.dtype for column in mapping.columns}
    return [
        _coerce_record(table, mapping, declared, refusal, number, record) for number, record in enumerate(records, 1)
    ]


def _coerce_record(
    table: sa.Table,
    mapping: SyncMapping,
    declared: dict[str, pl.DataType],
    refusal: Refusal,
    number: int,
    record: object,
) -> dict[str, Any]:
    def fail(message: str, reason: str) -> RecordError:
        return RecordError(f"record {number}: {message}", mapping=mapping.name, reason=reason)

    if not isinstance(record, Mapping):
        raise fail("is not an object of column values", "invalid_body")
    unknown = sorted(str(name) for name in record if name not in table.c)
    if unknown:
        raise fail(f"unknown column(s) {', '.join(map(repr, unknown))} in table {table.name!r}", "unknown_column")
    if mapping.flag_column in record:
        raise fail(f"column {mapping.flag_column!r} is set by zonesync, not by the caller", "unknown_column")
    for key in mapping.source_keys:
        if record.get(key) is None:
            raise fail(f"key column {key!r} is missing", "missing_required")
    row = {}
    for name, value in record.items():
        try:
            row[name] = _checked(table.c[name], declared.get(name), value, refusal)
        except _BAD_VALUE as exc:
            raise fail(f"column {name!r}: {exc}", "invalid_value") from None
    row[mapping.flag_column] = False
    return row


class ValueRefused(ValueError):
    """A value the column cannot hold exactly; the message describes it without quoting it."""


def _checked(column: sa.Column[Any], declared: pl.DataType | None, value: Any, refusal: Refusal) -> Any:
    """`_coerce_value`, then what the database itself would not keep exactly (ValueRefused)."""
    try:
        coerced = _coerce_value(column, declared, value)
    except ValueRefused:
        raise
    except _BAD_VALUE as exc:  # a library's own words may quote the value: say what it was instead
        raise ValueRefused(f"got {described(value)}, which the column cannot hold ({type(exc).__name__})") from None
    reason = refusal(column, coerced)
    if reason:
        raise ValueRefused(reason)
    return coerced


def _coerce_value(column: sa.Column[Any], declared: pl.DataType | None, value: Any) -> Any:
    """One value in the form the driver binds exactly for this column."""
    if value is None:
        return None
    sql_type = column.type
    if isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float):
        return _exact_decimal(value, sql_type.precision, sql_type.scale)
    if isinstance(sql_type, sa.Boolean):
        # 0 and 1 too: how MariaDB and SQLite store booleans.
        if not isinstance(value, bool | int) or value not in (True, False):
            raise ValueRefused(f"expected true or false, got {described(value)}")
        return bool(value)
    if isinstance(sql_type, sa.Integer):
        return _integer(value)
    if isinstance(sql_type, sa.DateTime):
        moment = _timestamp(value)
        # A column without a zone (MariaDB DATETIME) holds UTC wall-clock time; drivers drop the offset.
        return moment if sql_type.timezone else moment.replace(tzinfo=None)
    if isinstance(sql_type, sa.Date):
        return value if isinstance(value, date) else date.fromisoformat(_text_of(value, "a date"))
    if isinstance(sql_type, sa.String):
        return _text(value, declared)
    return value


def _integer(value: Any) -> int:
    """An integer (or its text) within 64 bits: the widest integer column of every zone."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and len(value) <= 30 and value.strip().lstrip("-").isdigit():
        number = int(value)
    else:
        raise ValueRefused(f"expected an integer, got {described(value)}")
    if number not in _INT64:
        raise ValueRefused(f"got {described(number)}, beyond the 64-bit integer range")
    return number


def _exact_decimal(value: Any, precision: int | None, scale: int | None) -> Decimal:
    """A Decimal that fits numeric(precision, scale) without rounding (floats go through their shortest text)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueRefused(f"expected a decimal number, got {described(value)}")
    try:
        number = Decimal(str(value).strip())
    except ArithmeticError:
        raise ValueRefused(f"got {described(value)}, which is not a number") from None
    if not number.is_finite():
        raise ValueRefused("got NaN or an infinity, not a finite number")
    exponent = int(number.normalize().as_tuple().exponent)
    if scale is not None and -exponent > scale:
        raise ValueRefused(f"got {-exponent} digits after the point; the column keeps {scale}")
    whole_digits = number.adjusted() + 1 if number else 0
    if precision is not None and scale is not None and whole_digits > precision - scale:
        raise ValueRefused(f"got {whole_digits} digits before the point; the column keeps {precision - scale}")
    return number


def _timestamp(value: Any) -> datetime:
    """An aware UTC datetime (naive input is taken as UTC, the zones' clock), exact to the microsecond."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = _text_of(value, "a timestamp")
        fraction = _FRACTION.search(text)
        if fraction and len(fraction.group(1)) > 6:
            raise ValueRefused("got a timestamp finer than a microsecond, the finest time the zones keep")
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    try:
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise ValueRefused("got a timestamp outside the years 1 to 9999 once in UTC") from None


def _text_of(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > 100:
        raise ValueRefused(f"expected {what} as text, got {described(value)}")
    return value


def described(value: Any) -> str:
    """A value as a message may mention it: its kind and size, never its content."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return f"an integer of {len(str(abs(value)))} digit(s)"
    if isinstance(value, Decimal):
        return f"a number of {len(value.as_tuple().digits)} digit(s)" if value.is_finite() else "NaN or an infinity"
    if isinstance(value, str):
        return f"a text of {len(value)} character(s)"
    kinds = {float: "a floating-point number", list: "a list", dict: "an object"}
    return next((kind for cls, kind in kinds.items() if isinstance(value, cls)), f"a {type(value).__name__}")


def _text(value: Any, declared: pl.DataType | None) -> str:
    """Text columns; where the model declares a decimal or timestamp (stored as text on SQLite), its exact text."""
    if isinstance(declared, pl.Decimal):
        return str(_exact_decimal(value, declared.precision, declared.scale))
    if isinstance(declared, pl.Datetime):
        return _timestamp(value).isoformat(sep=" ", timespec="microseconds")
    if not isinstance(value, str):
        raise ValueRefused(f"expected text, got {described(value)}")
    return value


def coerce_update(
    table: sa.Table, mapping: SyncMapping, key: object, changes: object, refusal: Refusal = _no_refusal
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check and convert an update: the full key (source names) and the changed columns (not key, not flag)."""

    def fail(message: str, reason: str = "invalid_value") -> RecordError:
        return RecordError(message, mapping=mapping.name, reason=reason)

    if not isinstance(key, Mapping) or not isinstance(changes, Mapping) or not changes:
        raise fail('expected {"key": {...}, "changes": {...}} with at least one change', "invalid_body")
    typed_key = coerce_key(table, mapping, key, refusal)
    forbidden = sorted(set(changes) & {*mapping.source_keys, mapping.flag_column})
    if forbidden:
        raise fail(f"column(s) {', '.join(map(repr, forbidden))} cannot be changed by an update", "unknown_column")
    unknown = sorted(str(name) for name in changes if name not in table.c)
    if unknown:
        raise fail(f"unknown column(s) {', '.join(map(repr, unknown))} in table {table.name!r}", "unknown_column")
    kept_inside = sorted(set(changes) - set(mapping.carried_source_columns))
    if kept_inside:
        names = ", ".join(map(repr, kept_inside))
        raise fail(f"column(s) {names} stay in the {mapping.source_zone} zone: zonesync neither reads nor changes "
                   f"them (change them in {table.name!r} directly)", "unknown_column")  # fmt: skip
    return typed_key, _converted(table, mapping, dict(changes), refusal)


def coerce_key(table: sa.Table, mapping: SyncMapping, key: object, refusal: Refusal = _no_refusal) -> dict[str, Any]:
    """Check and convert the key of one row (source names, every key column)."""
    if not isinstance(key, Mapping):
        raise RecordError('expected {"key": {...}}', mapping=mapping.name, reason="invalid_body")
    if set(key) != set(mapping.source_keys):
        raise RecordError(f"the key must give exactly {', '.join(mapping.source_keys)}", mapping=mapping.name,
                          reason="missing_required")  # fmt: skip
    return _converted(table, mapping, dict(key), refusal)


def column_value(table: sa.Table, mapping: SyncMapping, name: str, value: Any) -> Any:
    """A value as `coerce_*` would bind it: the common form in which stored and requested values compare."""
    declared = {column.source: column.dtype for column in mapping.columns}.get(name)
    return _coerce_value(table.c[name], declared, value)


def _converted(table: sa.Table, mapping: SyncMapping, values: dict[str, Any], refusal: Refusal) -> dict[str, Any]:
    declared = {column.source: column.dtype for column in mapping.columns}
    converted = {}
    for name, value in values.items():
        try:
            converted[name] = _checked(table.c[name], declared.get(name), value, refusal)
        except _BAD_VALUE as exc:
            raise RecordError(f"column {name!r}: {exc}", mapping=mapping.name, reason="invalid_value") from None
    return converted
