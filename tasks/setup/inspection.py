"""What `zonesync init` and `zonesync status` learn from the live databases about each mapping."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import SyncError
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.schema.catalog import has_unique_key, mapping_tables, reflect_table
from zonesync.tasks.sync.partitions import partition_number
from zonesync.tasks.zones.engines import dialect_for, installing_for, reconciling_for


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
    # Deletes only need them once a tombstone arrives (rows keep syncing): the carry of deletes stops until then.
    check.warnings += [f"{why}: deleted rows are not carried until it is" for why in
                       delete_policy_problems(mapping, tables.target, target)]  # fmt: skip
    if mapping.on_delete != "ignore" and mapping.target_version is None:
        check.warnings.append(f"on_delete={mapping.on_delete!r} without a version_column in the target: a delete "
                              "is applied whatever the target row holds now (declare one to refuse deletes over "
                              "later changes)")  # fmt: skip
    installing = installing_for(source)
    check.advice.append(installing.recommended_index(tables.source, mapping.source_keys, mapping.flag_column))
    if mapping.partitions > 1:
        number = partition_number(reconciling_for(source), tables.source, mapping)
        check.advice += filter(None, [installing.partition_index(tables.source, number, mapping.source_keys,
                                                                 mapping.flag_column)])  # fmt: skip
    check.advice.extend(installing.table_advice(tables.source))
    return check


def delete_policy_problems(mapping: SyncMapping, live_target: sa.Table, target: Engine) -> list[str]:
    """What the mapping's on_delete policy needs in the target zone and does not find there."""
    marker = mapping.deleted_marker
    if mapping.on_delete == "soft" and (marker not in live_target.c or not live_target.c[marker].nullable):
        return [f"on_delete='soft' needs a nullable column {marker!r} in the target table {mapping.target_table!r} "
                "(its deleted marker: a timestamp or a boolean)"]  # fmt: skip
    if mapping.on_delete != "archive":
        return []
    try:
        archive = reflect_table(target, mapping.archive_table_name, mapping.target_zone, mapping.name)
    except SyncError:
        return [f"on_delete='archive' needs the table {mapping.archive_table_name!r} in the {mapping.target_zone} "
                f"zone: the columns of {mapping.model.__name__} and {marker!r}"]  # fmt: skip
    missing = [name for name in (*mapping.target_columns, marker) if name not in archive.c]
    return [f"archive table {mapping.archive_table_name!r} lacks column {name!r}" for name in missing]


def backlog(mapping: SyncMapping, source: Engine) -> int:
    """How many eligible source rows are not synced yet."""
    table = reflect_table(source, mapping.source_table, mapping.source_zone, mapping.name)
    pending = [dialect_for(source).not_synced(table.c[mapping.flag_column])]
    pending += [table.c[column] == value for column, value in (mapping.eligible or {}).items()]
    with source.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*pending)).scalar_one())
