"""The HTTP entry point's audit trail (bookkeeping table `api_audit`, intranet zone): which client wrote which
keys, when, with which outcome. A batch of coalesced pushes is recorded with one statement.

Keys only, never values: a key is what an operator needs to find the record, and values stay in the zones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prefect.logging import get_logger
from sqlalchemy.engine import Engine

from zonesync.schemas.errors import short_message
from zonesync.tasks.bookkeeping.tables import api_audit, utc_now
from zonesync.tasks.zones.engines import in_transaction

AUDITED_KEYS = 1000  # keys kept per request (its record count is kept whole)
_ROWS_PER_STATEMENT = 100  # 800 bound parameters (8 columns): below every driver's limit, SQLite's oldest 999 too
logger = get_logger("zonesync.audit")


@dataclass(frozen=True)
class AuditEntry:
    """One answered write request."""

    client: str
    mapping: str
    operation: str  # push, update, delete
    status: int
    outcome: str
    keys: Sequence[Any]


def record(intranet: Engine, entries: Sequence[AuditEntry]) -> None:
    """Write the entries in one statement. A failure is logged, never raised: the writes they describe stand,
    and their callers have been (or are about to be) answered."""
    if not entries:
        return
    now = utc_now()
    rows = [_row(entry, now) for entry in entries]
    # One multi-row VALUES per chunk: it asks for no generated id back, so no RETURNING (the API's role may only
    # INSERT) and no sequence fetched first (a round trip per request, measured on PostgreSQL).
    chunks = [rows[start : start + _ROWS_PER_STATEMENT] for start in range(0, len(rows), _ROWS_PER_STATEMENT)]
    try:
        in_transaction(intranet, lambda conn: [conn.execute(sa.insert(api_audit).values(chunk)) for chunk in chunks])
    except Exception as exc:
        logger.error("audit trail: %d request(s) not recorded: %s", len(rows), short_message(exc))


def _row(entry: AuditEntry, at: datetime) -> dict[str, Any]:
    return {
        "at": at, "client": entry.client[:63], "mapping": entry.mapping[:63], "operation": entry.operation,
        "status": entry.status, "outcome": entry.outcome[:32] or "success", "records": len(entry.keys),
        "record_keys": json.dumps(list(entry.keys[:AUDITED_KEYS]), default=str, ensure_ascii=False),
    }  # fmt: skip


def recent(intranet: Engine, *, client: str | None = None, mapping: str | None = None, limit: int = 50) -> list[Any]:
    """The latest entries, newest first (of one client or mapping)."""
    query = sa.select(api_audit).order_by(api_audit.c.id.desc()).limit(limit)
    if client is not None:
        query = query.where(api_audit.c.client == client)
    if mapping is not None:
        query = query.where(api_audit.c.mapping == mapping)
    with intranet.connect() as conn:
        return list(conn.execute(query))
