"""Helpers for the integration tests: create and seed tables, read them back as comparable Python values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import polars as pl
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from sqlalchemy.engine import Engine

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.tables import batch_job, sync_error
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.sync.run import Zones, sync_mapping_rows
from zonesync.tasks.zones.engines import dialect_for

Key = tuple[Any, ...]


def create(engine: Engine, metadata: sa.MetaData, *names: str) -> None:
    """Create some (default: all) tables of a MetaData."""
    tables = [metadata.tables[name] for name in names] if names else None
    metadata.create_all(engine, tables=tables)


def seed(engine: Engine, table_name: str, frame: pl.DataFrame, keys: Sequence[str]) -> None:
    """Write rows with the dialect's own bulk upsert (exact decimals, tz-aware timestamps, booleans)."""
    table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        dialect_for(engine).upsert(conn, table, frame, keys)


def execute(engine: Engine, statement: str | sa.Executable, parameters: Any = None) -> None:
    """Run one statement in its own transaction."""
    with engine.begin() as conn:
        conn.execute(sa.text(statement) if isinstance(statement, str) else statement, parameters)


def reflect(engine: Engine, name: str) -> sa.Table:
    """A table as the database has it."""
    return sa.Table(name, sa.MetaData(), autoload_with=engine)


def rows(engine: Engine, name: str) -> list[dict[str, Any]]:
    """Every row of a table as dicts of what the driver returns."""
    table = reflect(engine, name)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(table))]


def normalize(value: Any, dtype: pl.DataType) -> Any:
    """A stored value (any backend's representation) as the Python value of a model type."""
    if value is None:
        return None
    if isinstance(dtype, pl.Decimal):
        return Decimal(str(value))
    if isinstance(dtype, pl.Datetime):
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if dtype == pl.Date:
        return date.fromisoformat(value) if isinstance(value, str) else value
    if dtype == pl.Boolean:
        return bool(int(value))
    if dtype.is_integer():
        return int(value)
    return value


def flag_value(value: Any) -> bool:
    """A stored flag (NULL, 0/1, bool) as 'synced or not'."""
    return value is not None and bool(int(value))


def target_rows(engine: Engine, mapping: SyncMapping) -> dict[Key, dict[str, Any]]:
    """The target table by key, values normalised to the model's types."""
    result = {}
    for row in rows(engine, mapping.target_table):
        values = {c.name: normalize(row[c.name], c.dtype) for c in mapping.columns}
        result[tuple(values[k] for k in mapping.keys)] = values
    return result


def source_rows(engine: Engine, mapping: SyncMapping) -> dict[Key, dict[str, Any]]:
    """The source table by (target-typed) key: mapped values under target names, plus the raw flag."""
    result = {}
    for row in rows(engine, mapping.source_table):
        values = {c.name: normalize(row[c.source], c.dtype) for c in mapping.columns}
        values["__flag"] = flag_value(row[mapping.flag_column])
        result[tuple(values[k] for k in mapping.keys)] = values
    return result


def mapped(values: dict[str, Any]) -> dict[str, Any]:
    """Source values without the flag: what the target row must equal."""
    return {name: value for name, value in values.items() if name != "__flag"}


def errors(engine: Engine, mapping: str | None = None, *, open_only: bool = False) -> list[dict[str, Any]]:
    """sync_error rows (of one mapping), each with its record key decoded into `key` (a dict)."""
    query = sa.select(sync_error).order_by(sync_error.c.id)
    if mapping is not None:
        query = query.where(sync_error.c.mapping == mapping)
    if open_only:
        query = query.where(sync_error.c.resolved_at.is_(None))
    with engine.connect() as conn:
        found = [dict(row._mapping) for row in conn.execute(query)]
    for row in found:
        row["key"] = json.loads(row["record_key"])
    return found


def errors_by_key(engine: Engine, mapping: SyncMapping, *, open_only: bool = False) -> dict[Key, dict[str, Any]]:
    """sync_error rows of a mapping by key tuple (target key order, model types)."""
    types = {c.name: c.dtype for c in mapping.key_columns}
    return {
        tuple(normalize(row["key"][k], types[k]) for k in mapping.keys): row
        for row in errors(engine, mapping.name, open_only=open_only)
    }


def unreachable_url(backend: str, tmp_path: Path) -> str:
    """A URL of the backend's kind whose database cannot be opened (its password must never be printed)."""
    if backend == "sqlite":
        (tmp_path / "a-directory.db").mkdir()
        return f"sqlite:///{tmp_path / 'a-directory.db'}"
    scheme = "postgresql" if backend == "postgresql" else "mysql"
    return f"{scheme}://zonesync:secret-pw@127.0.0.1:1/nowhere"


def flow_run_artifacts(flow_run_id: str) -> dict[str, Any]:
    """The artifacts of one flow run, by key (read back from the Prefect server)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return {artifact.key: artifact for artifact in found}


def jobs(engine: Engine) -> list[dict[str, Any]]:
    """batch_job rows, oldest first."""
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(batch_job).order_by(batch_job.c.id))]


def sync(mapping: SyncMapping, source: Engine, target: Engine, intranet: Engine, batch_size: int) -> MappingSyncResult:
    """Run the sync engine for one mapping (no Prefect)."""
    return sync_mapping_rows(mapping, Zones(source=source, target=target, intranet=intranet), batch_size)


def unflagged_keys(engine: Engine, mapping: SyncMapping) -> set[Key]:
    """Keys of the source rows whose flag is not true (NULL counts as not synced)."""
    return {key for key, values in source_rows(engine, mapping).items() if not values["__flag"]}


def assert_nothing_lost(
    mapping: SyncMapping, source: Engine, target: Engine, intranet: Engine, keys: Iterable[Key]
) -> tuple[set[Key], set[Key]]:
    """Guarantee 1, nothing lost, for `keys` (unflagged when the sync started): each is either synced (flag true,
    target equal to its mapped source values) or quarantined (open sync_error row with a reason, flag false).
    Returns (synced, quarantined) keys."""
    sources, targets = source_rows(source, mapping), target_rows(target, mapping)
    open_errors = errors_by_key(intranet, mapping, open_only=True)
    synced, quarantined = set(), set()
    for key in keys:
        assert key in sources, f"source row {key} disappeared"
        values = sources[key]
        if values["__flag"]:
            assert key in targets, f"{key} is flagged synced but missing in the target"
            assert targets[key] == mapped(values), f"{key} is flagged synced but the target copy differs"
            assert key not in open_errors, f"{key} is synced but still has an open sync_error row"
            synced.add(key)
        else:
            assert key in open_errors, f"{key} is neither synced nor quarantined"
            assert open_errors[key]["reason"], f"{key} is quarantined without a reason"
            quarantined.add(key)
    return synced, quarantined


def timestamp_literal(engine: Engine, moment: datetime) -> str:
    """A UTC timestamp as a SQL literal for the column type `utc_timestamp()` gives on this backend."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"'{text}'" if engine.dialect.name in ("mysql", "mariadb") else f"'{text}+00:00'"


def reasons(engine: Engine, mapping: SyncMapping) -> dict[Key, str]:
    """The reason of each sync_error record of a mapping, by key."""
    return {key: row["reason"] for key, row in errors_by_key(engine, mapping).items()}


# Triggers that refuse setting merchant.is_sync (a failed flag patch, injected without mocks), per backend.
REFUSE_FLAG = {
    "postgresql": [
        "CREATE OR REPLACE FUNCTION refuse_flag() RETURNS trigger AS $$ BEGIN IF NEW.is_sync THEN "
        "RAISE EXCEPTION 'flag refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_flag BEFORE UPDATE ON merchant FOR EACH ROW EXECUTE FUNCTION refuse_flag()",
    ],
    "mariadb": [
        "CREATE TRIGGER refuse_flag BEFORE UPDATE ON merchant FOR EACH ROW BEGIN IF NEW.is_sync THEN "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'flag refused'; END IF; END",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse_flag BEFORE UPDATE OF is_sync ON merchant WHEN NEW.is_sync "
        "BEGIN SELECT RAISE(ABORT, 'flag refused'); END",
    ],
}
