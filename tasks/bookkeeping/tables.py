"""The bookkeeping tables in the intranet zone (docs/architecture.md lists them).

Times are stored as naive UTC (`timestamp` / DATETIME(6)), the same on every backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.types import row_id, utc_wall_clock

metadata = sa.MetaData()
TIMESTAMP = utc_wall_clock()
ID_TYPE = row_id()

batch_job = sa.Table(
    "batch_job", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("job_name", sa.String(63), nullable=False),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("rows_eligible", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_synced", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_failed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("message", sa.Text),
    sa.Column("flow_run_id", sa.String(36)),
    sa.Index("ix_batch_job_job_name_business_date", "job_name", "business_date"),
)  # fmt: skip

sync_error = sa.Table(
    "sync_error", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("mapping", sa.String(63), nullable=False),
    sa.Column("direction", sa.String(32), nullable=False),
    sa.Column("record_key", sa.String(500), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("first_seen", TIMESTAMP, nullable=False),
    sa.Column("last_seen", TIMESTAMP, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("resolved_at", TIMESTAMP),
    sa.UniqueConstraint("mapping", "record_key", name="uq_sync_error_mapping_record_key"),
    sa.Index("ix_sync_error_open", "mapping", "resolved_at"),
)  # fmt: skip

# Update-with-rollback intents (tasks/update/intents.py): the before-image of an update in flight.
sync_intent = sa.Table(
    "sync_intent", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("mapping", sa.String(63), nullable=False),
    sa.Column("record_key", sa.String(500), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("transaction_id", sa.String(32), nullable=False),  # names its prepared transactions (2PC)
    sa.Column("before_image", sa.Text, nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    sa.Column("message", sa.Text),
    sa.Index("ix_sync_intent_open", "state"),
)  # fmt: skip

# Leases (tasks/bookkeeping/lease.py): who is working on a mapping right now, until when.
sync_lease = sa.Table(
    "sync_lease", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(100), nullable=False),
    sa.Column("expires_at", TIMESTAMP, nullable=False),
)  # fmt: skip


# The HTTP entry point's audit trail (audit.py): which client wrote which keys, when, with which outcome.
api_audit = sa.Table(
    "api_audit", metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("at", TIMESTAMP, nullable=False),
    sa.Column("client", sa.String(63), nullable=False),
    sa.Column("mapping", sa.String(63), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),  # push, update
    sa.Column("status", sa.Integer, nullable=False),  # the HTTP status answered
    sa.Column("outcome", sa.String(32), nullable=False),  # success, pending, or the reason code
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("record_keys", sa.Text, nullable=False),  # JSON array of the keys (the first AUDITED_KEYS)
    sa.Index("ix_api_audit_at", "at"),
)  # fmt: skip

# The HTTP entry point's idempotency keys (tasks/bookkeeping/idempotency.py): the first answer to each client's key.
api_idempotency = sa.Table(
    "api_idempotency", metadata,
    sa.Column("client", sa.String(63), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),  # of the method, the mapping and the body
    sa.Column("created_at", TIMESTAMP, nullable=False),  # when the request was taken (or taken over)
    sa.Column("status", sa.Integer),  # the HTTP status answered; null while the request is served
    sa.Column("answer", sa.Text),  # the JSON answered (keys and reasons, never a record's values)
    sa.Index("ix_api_idempotency_created_at", "created_at"),
)  # fmt: skip

# The schema contract (tasks/schema/contract.py): the accepted shape of each mapping's live tables.
sync_schema = sa.Table(
    "sync_schema", metadata,
    sa.Column("mapping", sa.String(63), primary_key=True),
    sa.Column("fingerprint", sa.String(16), nullable=False),
    sa.Column("shape", sa.Text, nullable=False),  # canonical JSON of tasks/schema_shape.MappingShape
    sa.Column("accepted_at", TIMESTAMP, nullable=False),
    sa.Column("accepted_by", sa.String(100), nullable=False),
    sa.Column("note", sa.Text, nullable=False),  # what was accepted: the first shape seen, or the changes
    sa.Column("broken_at", TIMESTAMP),  # a run stopped on a breaking change, not mended or accepted since
)  # fmt: skip


# Tombstones (tasks/deletes/): rows deleted from a mapped source table, recorded by the delete-capture trigger in
# the source table's own database (a trigger writes only its own database: for a mapping out of the internet zone
# this table lives there) and carried to the target like rows: claimed, applied, flagged. Keys, a version and a
# time only: never a deleted row's values.
tombstone_metadata = sa.MetaData()
sync_tombstone = sa.Table(
    "sync_tombstone", tombstone_metadata,
    sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
    sa.Column("mapping", sa.String(63), nullable=False),
    sa.Column("record_key", sa.String(500), nullable=False),  # JSON object of the source key columns
    sa.Column("version", sa.String(64)),  # the deleted row's version, as text (null: the mapping declares none)
    sa.Column("deleted_at", TIMESTAMP, nullable=False),
    sa.Column("is_sync", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("outcome", sa.String(16)),  # what carrying it did: tasks/deletes/tombstones.py
)  # fmt: skip
# Both indexes serve pending tombstones only (the carrier's reads, a re-insert's trigger): partial where the database
# allows, so flagging a tombstone writes no entry into them. Measured on PostgreSQL: flagging 300k took 1.1 s, 2.2 s
# with full indexes.
_PENDING = ~sync_tombstone.c.is_sync
sa.Index("ix_sync_tombstone_pending", sync_tombstone.c.mapping, sync_tombstone.c.is_sync, sync_tombstone.c.id,
         postgresql_where=_PENDING, sqlite_where=_PENDING)  # fmt: skip
sa.Index("ix_sync_tombstone_key", sync_tombstone.c.mapping, sync_tombstone.c.record_key,
         postgresql_where=_PENDING, sqlite_where=_PENDING)  # fmt: skip


def create_tombstones(engine: Engine) -> bool:
    """Create the tombstone table in a source zone's database if it is missing; whether it was created."""
    existed = sync_tombstone.name in sa.inspect(engine).get_table_names()
    tombstone_metadata.create_all(engine, checkfirst=True)
    return not existed


def missing_table(exc: sa.exc.DBAPIError, table: sa.Table, mapping: str | None = None) -> ConfigError | None:
    """A one-line ConfigError when `exc` says the bookkeeping `table` does not exist ("no such table" comes as a
    ProgrammingError or an OperationalError, by driver), else None."""
    text = str(exc.orig).lower()
    if table.name in text and ("exist" in text or "no such table" in text):
        return ConfigError(f"the bookkeeping table {table.name} is missing: run `zonesync init`", mapping=mapping)
    return None


def utc_now() -> datetime:
    """Now, as the naive UTC the bookkeeping tables store."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_bookkeeping(engine: Engine) -> list[str]:
    """Create the bookkeeping tables that do not exist yet; return the names created."""
    existing = set(sa.inspect(engine).get_table_names())
    metadata.create_all(engine, checkfirst=True)
    return [name for name in metadata.tables if name not in existing]


# What the flows and the command line use (the api_* tables are the HTTP API's; on MariaDB a role sees only the
# tables it holds a privilege on, so each checks for its own).
FLOW_TABLES = ("batch_job", "sync_error", "sync_intent", "sync_lease", "sync_schema")


def missing_tables(engine: Engine, names: Iterable[str] = FLOW_TABLES) -> list[str]:
    """Which of these bookkeeping tables `zonesync init` has not created yet."""
    existing = set(sa.inspect(engine).get_table_names())
    return [name for name in names if name not in existing]
