"""Reflect a mapping's tables from the live databases and check they can serve it (clear errors if not)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.mapping import SyncMapping
from zonesync.schemas.settings import Zone
from zonesync.tasks.zones.engines import describe
from zonesync.tasks.zones.failures import translate


@dataclass(frozen=True)
class MappingTables:
    """The reflected source and target tables of a mapping."""

    source: sa.Table
    target: sa.Table


@dataclass
class Reflections:
    """The tables one run reflected, by what its watch found (engine, name, catalog signature): a later part of the
    run (the next partition) that finds the same catalog reuses them, as an unpartitioned run uses its one
    reflection throughout; every batch's commit checks the catalog again (`tasks/schema/watch.py`). Reflecting a
    table costs about ten catalog queries (measured: a quarter of a 32-partition run's own time at 100k rows)."""

    tables: dict[Hashable, sa.Table] = field(default_factory=dict)

    def get(self, found: Hashable | None, reflect: Callable[[], sa.Table]) -> sa.Table:
        """What `reflect` gives for the catalog `found` (None: reflected afresh, never kept)."""
        if found is None:
            return reflect()
        if found not in self.tables:
            self.tables[found] = reflect()
        return self.tables[found]


def named_table(qualified_name: str) -> sa.Table:
    """A table by its (schema-qualified) name only, unreflected: enough to name it in a catalog query."""
    schema, _, name = qualified_name.rpartition(".")
    return sa.Table(name, sa.MetaData(), schema=schema or None)


def reflect_table(engine: Engine, qualified_name: str, zone: Zone, mapping: str) -> sa.Table:
    """Reflect one table; a missing table or unreachable database is one clear line."""
    schema, _, name = qualified_name.rpartition(".")
    try:
        table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise ConfigError(
            f"table {qualified_name!r} not found in the {zone} zone ({describe(engine)})", mapping=mapping
        ) from None
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, what=f"reading table {qualified_name!r} in the {zone} zone", mapping=mapping) from exc
    # SQLite reflects `INTEGER PRIMARY KEY` as nullable, and SQLAlchemy then cannot order the rows an INSERT ...
    # RETURNING gives back (the push needs them in the order sent). A key is never NULL.
    for column in table.primary_key.columns:
        column.nullable = False
    return table


def _require_columns(table: sa.Table, columns: Iterable[str], zone: Zone, role: str, mapping: str) -> None:
    for column in columns:
        if column not in table.c:
            raise ConfigError(
                f"{role} table {table.name!r} in the {zone} zone has no column {column!r}", mapping=mapping
            )


def source_table(mapping: SyncMapping, engine: Engine) -> sa.Table:
    """Reflect a mapping's source table and check it has every column the mapping reads."""
    table = reflect_table(engine, mapping.source_table, mapping.source_zone, mapping.name)
    needed = [c.source for c in mapping.columns] + [mapping.flag_column, *(mapping.eligible or {})]
    if mapping.version_column:
        needed.append(mapping.version_column)
    _require_columns(table, needed, mapping.source_zone, "source", mapping.name)
    return table


def target_table(mapping: SyncMapping, engine: Engine, *, require: bool = True) -> sa.Table:
    """Reflect a mapping's target table and (unless not `require`d) check it has every model column."""
    table = reflect_table(engine, mapping.target_table, mapping.target_zone, mapping.name)
    return require_target_columns(mapping, table) if require else table


def require_target_columns(mapping: SyncMapping, table: sa.Table) -> sa.Table:
    """The target table, if it has every model column (else one clear line)."""
    _require_columns(table, mapping.target_columns, mapping.target_zone, "target", mapping.name)
    return table


def mapping_tables(mapping: SyncMapping, source_engine: Engine, target_engine: Engine) -> MappingTables:
    """Reflect and check both tables of a mapping."""
    return MappingTables(source_table(mapping, source_engine), target_table(mapping, target_engine))


def has_unique_key(table: sa.Table, keys: Iterable[str]) -> bool:
    """Whether a primary key, unique constraint or unique index covers exactly these columns."""
    wanted = set(keys)
    if {c.name for c in table.primary_key.columns} == wanted:
        return True
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint) and {c.name for c in constraint.columns} == wanted:
            return True
    return any(index.unique and {c.name for c in index.columns} == wanted for index in table.indexes)


def polars_hint(column: sa.Column[Any]) -> pl.DataType:
    """A polars type close to a reflected column's type (decides how dialects read it exactly)."""
    sql_type = column.type
    if isinstance(sql_type, sa.DateTime):
        return pl.Datetime("us", "UTC" if getattr(sql_type, "timezone", False) else None)
    if isinstance(sql_type, sa.Date):
        return pl.Date()
    if isinstance(sql_type, sa.Numeric) and not isinstance(sql_type, sa.Float):
        return pl.Decimal(38, sql_type.scale or 0)
    return pl.String()
