"""What every test starts from: both zones empty, the bookkeeping tables as `zonesync init` creates them, whatever
the test before did to them (they are truncated when untouched, dropped and created again when altered)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import ThrowawayServers, ZonePair, backend_param, make_pair
from zonesync.tasks.bookkeeping.tables import batch_job, metadata, utc_now
from zonesync.tasks.zones.engines import dialect_for

SERVERS = [backend_param("postgresql"), backend_param("mariadb")]


def _signatures(pair: ZonePair) -> dict[str, object]:
    dialect = dialect_for(pair.intranet)
    with pair.intranet.connect() as conn:
        return {table.name: dialect.catalog_signature(conn, table) for table in metadata.sorted_tables}


def _a_job(pair: ZonePair) -> int:
    with pair.intranet.begin() as conn:
        values = {
            "job_name": "retry-sync",
            "business_date": date(2026, 12, 7),
            "status": "RUNNING",
            "started_at": utc_now(),
        }
        inserted = conn.execute(sa.insert(batch_job).values(values))
        return int(inserted.inserted_primary_key[0])


@pytest.mark.parametrize("backend", SERVERS)
def test_the_next_pair_starts_empty_with_ids_from_one_and_tables_as_created(
    servers: ThrowawayServers, backend: str, tmp_path: Path
) -> None:
    first = make_pair(servers, backend, backend, tmp_path)
    created = _signatures(first)
    assert _a_job(first) == 1 and _a_job(first) == 2
    with first.intranet.begin() as conn:  # a test that alters a bookkeeping table and adds one of its own
        conn.exec_driver_sql("ALTER TABLE sync_lease ADD COLUMN scribble INTEGER")
        conn.exec_driver_sql("CREATE TABLE leftover (id INTEGER)")
    first.dispose()

    second = make_pair(servers, backend, backend, tmp_path)

    assert _signatures(second) == created  # the altered table was created again
    assert set(sa.inspect(second.intranet).get_table_names()) == set(metadata.tables)
    with second.intranet.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batch_job)).scalar() == 0
    assert _a_job(second) == 1  # as new
    second.dispose()
