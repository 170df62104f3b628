"""Mapping error paths at the engine level: clear messages naming what is wrong, never a password."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import ThrowawayServers, ZonePair, backend_param
from tests.integration import data
from tests.integration.helpers import create, seed, sync
from tests.integration.mappings import NOTES
from tests.integration.tables import source_tables, target_tables
from zonesync.schemas.errors import TransientSyncError
from zonesync.tasks.zones.engines import create_engine, parse_url


def test_missing_target_column_names_table_and_column(zones: ZonePair) -> None:
    """A target table without one of the model's columns: status error naming the table and column; the
    source rows stay unflagged and nothing is written."""
    create(zones.intranet, source_tables(), "zs_note_src")
    create(zones.internet, target_tables(), "zs_note")
    seed(zones.intranet, "zs_note_src", data.notes(["a", "b"]), ("note_key",))
    with zones.internet.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE zs_note DROP COLUMN noted_at")

    result = sync(NOTES, zones.intranet, zones.internet, zones.intranet, batch_size=10)

    assert result.status == "error"
    assert "'zs_note'" in result.message and "'noted_at'" in result.message and "internet" in result.message
    assert (result.read, result.upserted, result.flagged) == (0, 0, 0)


@pytest.mark.parametrize("server", [backend_param("postgresql"), backend_param("mariadb")])
def test_database_errors_never_show_the_password(servers: ThrowawayServers, server: str) -> None:
    """A target the server refuses (unknown database, with the real password in the URL): the error names
    the zone but not the password."""
    databases = servers.get(server)
    source = create_engine(parse_url(databases.zone_url("intranet"), setting="ZONESYNC_INTRANET_URL"))
    wrong = make_url(databases.zone_url("internet")).set(database="zs_no_such_database")
    target = create_engine(parse_url(wrong.render_as_string(hide_password=False), setting="ZONESYNC_INTERNET_URL"))
    create(source, source_tables(), "zs_note_src")
    try:
        result = sync(NOTES, source, target, source, batch_size=10)
        assert result.status == "error"
        message = result.message
    except TransientSyncError as exc:
        message = str(exc)
    finally:
        source.dispose()
        target.dispose()
    assert databases.password not in message
    assert "internet" in message or "zs_no_such_database" in message, message
