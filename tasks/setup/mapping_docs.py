"""Data-mapping documentation derived from the declarations, in the specification's table format."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import polars as pl

from zonesync.schemas.mapping import SyncMapping

_ZONE_TITLE = {"intranet": "Intranet", "internet": "Internet"}


def type_name(dtype: pl.DataType) -> str:
    """A reader-friendly name for a column type."""
    if isinstance(dtype, pl.Decimal):
        return f"decimal({dtype.precision},{dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return (
            f"timestamp({dtype.time_unit}, {dtype.time_zone})" if dtype.time_zone else f"timestamp({dtype.time_unit})"
        )
    return {pl.String: "text", pl.Boolean: "boolean", pl.Date: "date"}.get(type(dtype), str(dtype).lower())


def mapping_markdown(mapping: SyncMapping) -> str:
    """One mapping as `Zone | Database Table | Field Name` rows plus its field list."""
    fields = ", ".join(f"{c.name} ({type_name(c.dtype)}{'' if c.nullable else ', required'})" for c in mapping.columns)
    source_fields = ", ".join(c.source for c in mapping.columns)
    lines = [
        f"#### {mapping.name}",
        "",
        mapping.description or f"{mapping.direction.replace('_', ' ')}",
        "",
        "| Zone | Database Table | Field Name |",
        "| --- | --- | --- |",
        f"| {_ZONE_TITLE[mapping.source_zone]} | {mapping.source_table} | {source_fields}, {mapping.flag_column} |",
        f"| {_ZONE_TITLE[mapping.target_zone]} | {mapping.target_table} | {fields} |",
        "",
        f"- Keys: {', '.join(mapping.keys)}; flag: `{mapping.flag_column}` in the {mapping.source_zone} zone",
    ]
    if mapping.renames:
        lines.append("- Renamed: " + ", ".join(f"{s} → {t}" for s, t in mapping.renames.items()))
    if mapping.version_column:
        lines.append(f"- Changes in flight detected by: {mapping.version_column}")
    if mapping.eligible:
        lines.append("- Eligible rows: " + ", ".join(f"{k} = {v!r}" for k, v in mapping.eligible.items()))
    lines.append(_reconciliation_line(mapping))
    lines.append("- Source columns not listed never leave the source zone.")
    return "\n".join(lines)


def _reconciliation_line(mapping: SyncMapping) -> str:
    """How the end-day reconciliation compares the mapping's zones."""
    date_column = mapping.business_date_column
    line = f"- Reconciled: {f'the rows of a business date by {date_column}' if date_column else 'the whole table'}"
    if mapping.reconcile_by:
        line += f", counted per {', '.join(mapping.reconcile_by)}"
    if mapping.amount_columns:
        line += f", summing {', '.join(mapping.amount_columns)}"
    return line


def mappings_markdown(mappings: Iterable[SyncMapping]) -> str:
    """Every mapping's data-mapping table, in the specification's format."""
    return "### Data Mapping\n\n" + "\n\n".join(mapping_markdown(m) for m in mappings) + "\n"


def record_schema(mapping: SyncMapping) -> dict[str, Any]:
    """JSON Schema of a record as applications send it: source column names, the model's types."""
    properties = {column.source: _json_type(column.dtype, column.nullable) for column in mapping.columns}
    return {
        "title": f"{mapping.name} record",
        "type": "object",
        "properties": properties,
        "required": [column.source for column in mapping.columns if not column.nullable],
        "additionalProperties": True,
        "description": "Source columns; other columns of the source table may be sent too (they stay in its zone).",
    }


def delete_schema(mapping: SyncMapping) -> dict[str, Any]:
    """JSON Schema of a delete (`DELETE`): the record's whole key (source names)."""
    columns = record_schema(mapping)["properties"]
    keys = {name: columns[name] for name in mapping.source_keys}
    return {
        "title": f"{mapping.name} delete",
        "type": "object",
        "required": ["key"],
        "properties": {"key": {"type": "object", "properties": keys, "required": list(keys)}},
    }


def update_schema(mapping: SyncMapping) -> dict[str, Any]:
    """JSON Schema of an update (`PATCH`): the record's whole key and the changed columns (source names)."""
    columns = record_schema(mapping)["properties"]
    keys = {name: columns[name] for name in mapping.source_keys}
    changes = {name: schema for name, schema in columns.items() if name not in keys}
    return {
        "title": f"{mapping.name} update",
        "type": "object",
        "required": ["key", "changes"],
        "properties": {
            "key": {"type": "object", "properties": keys, "required": list(keys)},
            "changes": {"type": "object", "properties": changes, "minProperties": 1,
                        "description": "New values; other columns of the source table may be changed too."},
        },
    }  # fmt: skip


def _json_type(dtype: pl.DataType, nullable: bool) -> dict[str, Any]:
    if isinstance(dtype, pl.Decimal):
        schema: dict[str, Any] = {
            "type": ["string", "number"],
            "description": f"exact decimal({dtype.precision},{dtype.scale}); never rounded: more digits are refused",
        }
    elif isinstance(dtype, pl.Datetime):
        schema = {"type": "string", "format": "date-time", "description": "ISO 8601; without an offset it is UTC"}
    elif dtype == pl.Date:
        schema = {"type": "string", "format": "date"}
    elif dtype.is_integer():
        schema = {"type": "integer"}
    elif dtype.is_float():
        schema = {"type": "number"}
    elif dtype == pl.Boolean:
        schema = {"type": "boolean"}
    else:
        schema = {"type": "string"}
    if nullable:
        schema["type"] = [*([schema["type"]] if isinstance(schema["type"], str) else schema["type"]), "null"]
    return schema
