"""`SyncMapping`: one declaration that drives every flow.

A mapping names a source table in one zone, a target table in the other, and a Pandera (polars) model
that is the single source of truth for the target's columns, types, required fields and value checks.
Everything else (column lists, upsert statements, documentation) is derived from it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal, get_type_hints

import pandera.polars as pa
import polars as pl

from zonesync.schemas.errors import MappingError
from zonesync.schemas.model_columns import TargetColumn, longest_text, polars_dtype
from zonesync.schemas.settings import Zone

Direction = Literal["intranet_to_internet", "internet_to_intranet"]
DIRECTIONS: tuple[Direction, ...] = ("intranet_to_internet", "internet_to_intranet")
# What a row deleted in the source does to its target copy (docs/deletes.md): `soft` sets the target's deleted
# marker, `archive` moves the row to the archive table, `hard` deletes it, `ignore` leaves it (counted skipped).
OnDelete = Literal["soft", "archive", "hard", "ignore"]
ON_DELETE: tuple[OnDelete, ...] = ("soft", "archive", "hard", "ignore")
HIDDEN = "***"  # a sensitive key column's value, wherever a key is shown outside the zones

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # whole text only: fullmatch
_MAPPING_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_KEY_DTYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.String, pl.Date)


@dataclass(frozen=True)
class SyncMapping:
    """Which table in one zone feeds which table in the other, and how rows are turned into target rows."""

    name: str
    direction: Direction
    source_table: str
    target_table: str
    keys: tuple[str, ...]
    model: type[pa.DataFrameModel]
    renames: Mapping[str, str] = field(default_factory=dict)
    flag_column: str = "is_sync"
    version_column: str | None = None
    eligible: Mapping[str, Any] | None = None
    description: str = ""
    # The end-day reconciliation (target-side column names): which date or timestamp column places a row
    # in a business date, which columns to count and sum by, and which amounts to sum.
    business_date_column: str | None = None
    reconcile_by: tuple[str, ...] = ()
    amount_columns: tuple[str, ...] = ()
    # Target columns whose values are personal data even as a key (an account number, a national ID). Values
    # never leave the zones' databases anyway; a key normally may (logs, artifacts, events, Prefect), but a
    # sensitive key column is shown there as HIDDEN. Such a column cannot group the reconciliation report.
    sensitive_columns: tuple[str, ...] = ()
    # Deletes (docs/deletes.md): the policy, the target column `soft` sets (and the archive table's deletion
    # time), the archive table (default: the target table + "_archive") and the states in which a target row is
    # never deleted (target column -> values; a payment not yet final).
    on_delete: OnDelete = "ignore"
    deleted_marker: str = "deleted_at"
    archive_table: str | None = None
    never_delete: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # Scaling out (docs/scaling.md): rows hashed by key into this many partitions, each carried under its own lease,
    # so that several workers share the mapping. 1: one writer at a time. With an integer key, `partition_block`
    # neighbouring keys share a partition (hashed by their block): a partition's batch is then a few runs of the
    # table instead of one row in N, and flagging it far cheaper (1: each key hashed alone).
    partitions: int = 1
    partition_block: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "reconcile_by", tuple(self.reconcile_by))
        object.__setattr__(self, "amount_columns", tuple(self.amount_columns))
        object.__setattr__(self, "sensitive_columns", tuple(self.sensitive_columns))
        object.__setattr__(self, "renames", MappingProxyType(dict(self.renames)))
        kept = {column: tuple(values) for column, values in dict(self.never_delete).items()}
        object.__setattr__(self, "never_delete", MappingProxyType(kept))
        if self.eligible is not None:
            object.__setattr__(self, "eligible", MappingProxyType(dict(self.eligible)))
        self._check()

    # -- derived declarations -------------------------------------------------------------------
    @property
    def source_zone(self) -> Zone:
        """The zone the rows are read from."""
        return "intranet" if self.direction == "intranet_to_internet" else "internet"

    @property
    def target_zone(self) -> Zone:
        """The zone the rows are written to."""
        return "internet" if self.direction == "intranet_to_internet" else "intranet"

    @cached_property
    def columns(self) -> tuple[TargetColumn, ...]:
        """Target columns in model order, each with its source column and polars type."""
        sources = {target: source for source, target in self.renames.items()}
        schema = self.model.to_schema()
        hints = get_type_hints(self.model, include_extras=True)
        columns = []
        for name, column in schema.columns.items():
            try:
                dtype = polars_dtype(column.dtype, hints.get(name))
            except MappingError as exc:
                raise MappingError(f"column {name!r}: {exc}", mapping=self.name) from None
            columns.append(TargetColumn(name, sources.get(name, name), dtype, bool(column.nullable), name in self.keys,
                                        longest_text(column.checks)))  # fmt: skip
        return tuple(columns)

    @cached_property
    def longest_texts(self) -> Mapping[str, int]:
        """Target column -> the most characters its valid values hold, where the model bounds it (a live column
        at least that long cannot cut a valid value: its check is skipped)."""
        return MappingProxyType({c.name: c.longest for c in self.columns if c.longest is not None})

    @property
    def target_columns(self) -> tuple[str, ...]:
        """Target column names in model order."""
        return tuple(column.name for column in self.columns)

    @property
    def key_columns(self) -> tuple[TargetColumn, ...]:
        """The key columns, in the order of `keys`."""
        by_name = {column.name: column for column in self.columns}
        return tuple(by_name[key] for key in self.keys)

    @property
    def source_keys(self) -> tuple[str, ...]:
        """Source-side names of the key columns."""
        return tuple(column.source for column in self.key_columns)

    @property
    def target_version(self) -> TargetColumn | None:
        """The target column the version column feeds, if the model has one (a delete is checked against it)."""
        return next((column for column in self.columns if column.source == self.version_column), None)

    @property
    def guard_columns(self) -> tuple[str, ...]:
        """Source columns compared before flagging: the version column, or every mapped column."""
        if self.version_column:
            return (self.version_column,)
        return tuple(column.source for column in self.columns if not column.is_key)

    @property
    def carried_source_columns(self) -> tuple[str, ...]:
        """The source columns zonesync reads and may change: the mapped ones, the flag, the version and the
        eligibility filter's. Every other column of the source table stays in its zone: a push inserts it with
        its record, and nothing in zonesync reads it back or changes it (the generated grants allow neither)."""
        names = [*(column.source for column in self.columns), self.flag_column, self.version_column,
                 *(self.eligible or {})]  # fmt: skip
        return tuple(dict.fromkeys(name for name in names if name))

    def source_column(self, target_column: str) -> str:
        """The source column that feeds a target column."""
        return next(column.source for column in self.columns if column.name == target_column)

    @cached_property
    def _hidden_names(self) -> frozenset[str]:
        """The sensitive columns by target and by source name (a key is shown by either)."""
        return frozenset(n for c in self.columns if c.name in self.sensitive_columns for n in (c.name, c.source))

    def shown_key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        """A key as a log, an artifact, an event or Prefect may show it: sensitive columns HIDDEN."""
        return {name: HIDDEN if name in self._hidden_names else value for name, value in key.items()}

    def shown_record_key(self, record_key: str) -> str:
        """A bookkeeping `record_key` (the key as JSON) as it may be shown outside the zones."""
        return json.dumps(self.shown_key(json.loads(record_key))) if self._hidden_names else record_key

    @property
    def archive_table_name(self) -> str:
        """Where `archive` moves a deleted row's target copy (in the target zone)."""
        return self.archive_table or f"{self.target_table}_archive"

    @property
    def artifact_slug(self) -> str:
        """The mapping name in the form Prefect accepts in artifact keys."""
        return self.name.replace("_", "-")

    # -- registration checks --------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        raise MappingError(message, mapping=self.name)

    def _check(self) -> None:
        if not isinstance(self.name, str) or not _MAPPING_NAME.fullmatch(self.name):
            raise MappingError(f"mapping name {self.name!r} must be lowercase letters, digits, '_' or '-'")
        if self.direction not in DIRECTIONS:
            self._fail(f"direction {self.direction!r} must be one of {', '.join(DIRECTIONS)}")
        if not (isinstance(self.model, type) and issubclass(self.model, pa.DataFrameModel)):
            self._fail("model must be a pandera.polars DataFrameModel subclass")
        for label, table in (("source_table", self.source_table), ("target_table", self.target_table)):
            self._check_table_name(label, table)
        self._check_columns()
        self._check_deletes()
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int) or not 0 < self.partitions <= 1024:
            self._fail(f"partitions {self.partitions!r} must be a whole number from 1 to 1024")
        self._check_partition_block()

    def _check_partition_block(self) -> None:
        block = self.partition_block
        if isinstance(block, bool) or not isinstance(block, int) or not 0 < block <= 1_000_000:
            self._fail(f"partition_block {block!r} must be a whole number from 1 to 1,000,000")
        if block > 1 and not (len(self.key_columns) == 1 and self.key_columns[0].dtype.is_integer()):
            self._fail(f"partition_block {block} needs a single integer key: keys in blocks are neighbouring numbers")

    def _check_deletes(self) -> None:
        if self.on_delete not in ON_DELETE:
            self._fail(f"on_delete {self.on_delete!r} must be one of {', '.join(ON_DELETE)}")
        self._check_identifier("deleted_marker", self.deleted_marker)
        if self.deleted_marker in self.target_columns:
            self._fail(f"deleted_marker {self.deleted_marker!r} is a column of {self.model.__name__}: the marker "
                       "is the target's own column, never sent from the source")  # fmt: skip
        if self.archive_table is not None:
            self._check_table_name("archive_table", self.archive_table)
        for column, values in self.never_delete.items():
            if column not in self.target_columns:
                self._fail(f"never_delete column {column!r} is not a column of {self.model.__name__}")
            if not values:
                self._fail(f"never_delete column {column!r} names no value")

    def _check_table_name(self, label: str, table: str) -> None:
        parts = table.split(".") if isinstance(table, str) else [table]
        if len(parts) > 2 or not all(isinstance(p, str) and _IDENTIFIER.fullmatch(p) for p in parts):
            self._fail(f"{label} {table!r} is not a valid table name (letters, digits, '_', optional schema.)")

    def _check_identifier(self, label: str, name: object) -> None:
        if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
            self._fail(f"{label} {name!r} is not a valid column name (letters, digits and '_', max 63)")

    def _check_columns(self) -> None:
        try:
            columns = self.columns
        except MappingError:
            raise
        except Exception as exc:
            self._fail(f"model {self.model.__name__} cannot be read: {exc}")
        model_columns = {column.name for column in columns}
        for column in columns:
            self._check_identifier("model column", column.name)
        if not self.keys:
            self._fail("keys must name at least one column")
        for key in self.keys:
            if key not in model_columns:
                self._fail(f"key column {key!r} is not a column of {self.model.__name__}")
        for column in self.key_columns:
            if column.nullable:
                self._fail(f"key column {column.name!r} must not be nullable")
            if not isinstance(column.dtype, _KEY_DTYPES):
                self._fail(f"key column {column.name!r} has type {column.dtype}; keys must be integers, text or dates")
        self._check_renames(model_columns)
        self._check_source_only_columns()
        self._check_reconciliation()

    def _check_renames(self, model_columns: set[str]) -> None:
        seen: dict[str, str] = {}
        for source, target in self.renames.items():
            self._check_identifier("rename source column", source)
            if target not in model_columns:
                self._fail(f"rename {source!r} -> {target!r}: {target!r} is not a column of {self.model.__name__}")
            if target in seen:
                self._fail(f"columns {seen[target]!r} and {source!r} are both renamed to {target!r}")
            seen[target] = source
            if source in model_columns and source not in self.renames.values():
                self._fail(f"rename source {source!r} is also a model column fed by itself; rename it too")

    def _check_source_only_columns(self) -> None:
        mapped_sources = {column.source for column in self.columns}
        self._check_identifier("flag_column", self.flag_column)
        if self.flag_column in mapped_sources:
            self._fail(f"flag_column {self.flag_column!r} must not be mapped to the target")
        if self.version_column is not None:
            self._check_identifier("version_column", self.version_column)
            if self.version_column in self.source_keys:
                self._fail(f"version_column {self.version_column!r} cannot be a key column")
        for column in self.eligible or {}:
            self._check_identifier("eligible filter column", column)

    def _check_reconciliation(self) -> None:
        dtypes = {column.name: column.dtype for column in self.columns}
        named = [("business_date_column", self.business_date_column)] if self.business_date_column else []
        named += [("reconcile_by column", name) for name in self.reconcile_by]
        named += [("amount column", name) for name in self.amount_columns]
        for label, name in named:
            if name not in dtypes:
                self._fail(f"{label} {name!r} is not a column of {self.model.__name__}")
        if self.business_date_column and not isinstance(dtypes[self.business_date_column], pl.Date | pl.Datetime):
            self._fail(f"business_date_column {self.business_date_column!r} must be a date or a datetime")
        for name in self.amount_columns:
            if not dtypes[name].is_numeric():
                self._fail(f"amount column {name!r} has type {dtypes[name]}; amounts must be numbers")
        for name in self.sensitive_columns:
            if name not in dtypes:
                self._fail(f"sensitive column {name!r} is not a column of {self.model.__name__}")
            if name in self.reconcile_by:
                self._fail(f"sensitive column {name!r} cannot be a reconcile_by column: the report shows its values")
