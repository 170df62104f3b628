"""What `zonesync init` and `zonesync status` learn from the live databases about each mapping."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.schema.catalog import has_unique_key, mapping_tables, reflect_table
from zonesync.tasks.zones.engines import dialect_for, installing_for


@dataclass
class MappingCheck:
    """Problems (the mapping cannot run), warnings (it runs, but should be fixed) and index advice."""

    mapping: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the mapping can run."""
        return not self.problems


def check_mapping(mapping: SyncMapping, source: Engine, target: Engine) -> MappingCheck:
    """Check tables, columns, key uniqueness and the flag column of a mapping against the live databases."""
    check = MappingCheck(mapping.name)
    try:
        tables = mapping_tables(mapping, source, target)
    except SyncError as exc:
        check.problems.append(str(exc).removeprefix(f"mapping '{mapping.name}': "))
        return check
    if not has_unique_key(tables.target, mapping.keys):
        check.problems.append(
            f"target table {mapping.target_table!r} has no primary key or unique index on ({', '.join(mapping.keys)}): "
            "upserts need one"
        )
    if not has_unique_key(tables.source, mapping.source_keys):
        check.warnings.append(
            f"source table {mapping.source_table!r} has no unique key on ({', '.join(mapping.source_keys)}): "
            "duplicate keys are quarantined as duplicate_key"
        )
    flag = tables.source.c[mapping.flag_column]
    if not isinstance(flag.type, sa.Boolean | sa.Integer):
        check.problems.append(f"flag column {mapping.flag_column!r} must be boolean, not {flag.type}")
    dialect = dialect_for(source)
    # Live columns narrower than the model: their values are refused or quarantined (type_loss) if they do not fit.
    by_source = {c.source: (c.dtype, c.longest) for c in mapping.columns}
    check.warnings += dialect.column_warnings(tables.source, by_source)
    check.warnings += dialect_for(target).column_warnings(tables.target, {c.name: (c.dtype, c.longest)
                                                                          for c in mapping.columns})  # fmt: skip
    for engine, zone in ((source, mapping.source_zone), (target, mapping.target_zone)):
        with engine.connect() as conn:
            check.warnings += [f"{zone} zone: {why}" for why in installing_for(engine).server_warnings(conn)]
    installing = installing_for(source)
    check.advice.append(installing.recommended_index(tables.source, mapping.source_keys, mapping.flag_column))
    check.advice.extend(installing.table_advice(tables.source))
    return check


def backlog(mapping: SyncMapping, source: Engine) -> int:
    """How many eligible source rows are not synced yet."""
    table = reflect_table(source, mapping.source_table, mapping.source_zone, mapping.name)
    pending = [dialect_for(source).not_synced(table.c[mapping.flag_column])]
    pending += [table.c[column] == value for column, value in (mapping.eligible or {}).items()]
    with source.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*pending)).scalar_one())
