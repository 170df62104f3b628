"""Records sent by applications (JSON objects or dicts, source column names) made ready for the source table.

Every value is checked against its column before anything is written: a value the column cannot hold
exactly (a decimal with more digits than its scale, a timestamp that does not parse, a float for an
integer) is refused with a message naming the record and the column, never rounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import polars as pl
import sqlalchemy as sa

from schemas.mapping import SyncMapping
from tasks.errors import TerminalSyncError


class RecordError(TerminalSyncError):
    """A record that cannot be written as sent (the caller's mistake: HTTP 422)."""

    def __init__(self, message: str, *, mapping: str, reason: str) -> None:
        super().__init__(message, mapping=mapping)
        self.reason = reason


def coerce_records(table: sa.Table, mapping: SyncMapping, records: object) -> list[dict[str, Any]]:
    """Check and convert records for an INSERT into the source table (flag set false)."""
    if not isinstance(records, Sequence) or isinstance(records, str | bytes) or not records:
        raise RecordError("expected one record (an object) or a non-empty list of records", mapping=mapping.name,
                          reason="invalid_body")  # fmt: skip
    declared = {column.source: column.dtype for column in mapping.columns}
    return [_coerce_record(table, mapping, declared, number, record) for number, record in enumerate(records, 1)]


def _coerce_record(
    table: sa.Table, mapping: SyncMapping, declared: dict[str, pl.DataType], number: int, record: object
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
            row[name] = _coerce_value(table.c[name], declared.get(name), value)
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise fail(f"column {name!r}: {exc}", "invalid_value") from None
    row[mapping.flag_column] = False
    return row


def _coerce_value(column: sa.Column[Any], declared: pl.DataType | None, value: Any) -> Any:
    """One value in the form the driver binds exactly for this column."""
    if value is None:
        return None
    sql_type = column.type
    if isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float):
        return _exact_decimal(value, sql_type.precision, sql_type.scale)
    if isinstance(sql_type, sa.Boolean):
        if value not in (True, False):  # 0 and 1 too: how MariaDB and SQLite store booleans
            raise TypeError(f"expected true or false, got {value!r}")
        return bool(value)
    if isinstance(sql_type, sa.Integer):
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
            raise TypeError(f"expected an integer, got {value!r}")
        return int(value)
    if isinstance(sql_type, sa.DateTime):
        moment = _timestamp(value).astimezone(UTC)
        # A column without a zone (MariaDB DATETIME) holds UTC wall-clock time; drivers drop the offset.
        return moment if sql_type.timezone else moment.replace(tzinfo=None)
    if isinstance(sql_type, sa.Date):
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    if isinstance(sql_type, sa.String):
        return _text(value, declared)
    return value


def _exact_decimal(value: Any, precision: int | None, scale: int | None) -> Decimal:
    """A Decimal that fits numeric(precision, scale) without rounding (floats go through their shortest text)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"expected a decimal number, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    exponent = int(number.normalize().as_tuple().exponent)
    if scale is not None and -exponent > scale:
        raise ValueError(f"{value} has more than {scale} digits after the point")
    digits = len(number.quantize(Decimal(1).scaleb(-(scale or 0))).as_tuple().digits) if scale is not None else 0
    if precision is not None and scale is not None and digits > precision:
        raise ValueError(f"{value} has more than {precision - scale} digits before the point")
    return number


def _timestamp(value: Any) -> datetime:
    """An aware datetime (naive input is taken as UTC, the zones' clock)."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any, declared: pl.DataType | None) -> str:
    """Text columns; where the model declares a decimal or timestamp (stored as text on SQLite), its exact text."""
    if isinstance(declared, pl.Decimal):
        return str(_exact_decimal(value, declared.precision, declared.scale))
    if isinstance(declared, pl.Datetime):
        return _timestamp(value).astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


def coerce_update(
    table: sa.Table, mapping: SyncMapping, key: object, changes: object
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check and convert an update: the full key (source names) and the changed columns (not key, not flag)."""

    def fail(message: str, reason: str = "invalid_value") -> RecordError:
        return RecordError(message, mapping=mapping.name, reason=reason)

    if not isinstance(key, Mapping) or not isinstance(changes, Mapping) or not changes:
        raise fail('expected {"key": {...}, "changes": {...}} with at least one change', "invalid_body")
    if set(key) != set(mapping.source_keys):
        raise fail(f"the key must give exactly {', '.join(mapping.source_keys)}", "missing_required")
    forbidden = sorted(set(changes) & {*mapping.source_keys, mapping.flag_column})
    if forbidden:
        raise fail(f"column(s) {', '.join(map(repr, forbidden))} cannot be changed by an update", "unknown_column")
    unknown = sorted(str(name) for name in changes if name not in table.c)
    if unknown:
        raise fail(f"unknown column(s) {', '.join(map(repr, unknown))} in table {table.name!r}", "unknown_column")
    return _converted(table, mapping, dict(key)), _converted(table, mapping, dict(changes))


def column_value(table: sa.Table, mapping: SyncMapping, name: str, value: Any) -> Any:
    """A value as `coerce_*` would bind it: the common form in which stored and requested values compare."""
    declared = {column.source: column.dtype for column in mapping.columns}.get(name)
    return _coerce_value(table.c[name], declared, value)


def _converted(table: sa.Table, mapping: SyncMapping, values: dict[str, Any]) -> dict[str, Any]:
    converted = {}
    for name, value in values.items():
        try:
            converted[name] = column_value(table, mapping, name, value)
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise RecordError(f"column {name!r}: {exc}", mapping=mapping.name, reason="invalid_value") from None
    return converted
