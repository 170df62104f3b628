"""The flows, the HTTP API and `recover` run as a role that holds only what `zonesync grants` prints, on PostgreSQL
and MariaDB: a missing grant fails here. The tables are made by their owner, as `zonesync init` is run."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import ServerDatabases, ThrowawayServers, ZonePair, backend_param
from tests.integration.console import Cli, zone_settings
from tests.integration.helpers import rows, seed
from tests.integration.test_http_api import RECORD, post, serve
from zonesync.flows.end_day_check import end_day_check
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas.registry import all_mappings
from zonesync.tasks import demo_data
from zonesync.tasks.demo_data import DEMO_BUSINESS_DATE
from zonesync.tasks.grants import grant_statements

pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.parametrize("backend", [backend_param("postgresql"), backend_param("mariadb")]),
]


def _admin(server: ServerDatabases, database: str) -> sa.Engine:
    return sa.create_engine(server.admin_url.set(database=database), isolation_level="AUTOCOMMIT")


@pytest.fixture
def least(
    servers: ThrowawayServers, backend: str, demo: ZonePair, use_zones: Callable[..., None]
) -> Iterator[ZonePair]:
    """The demo zones seen by a new role holding exactly the printed grants (settings pointed at it); the
    returned pair's engines are that role's, `demo`'s the owner's."""
    server = servers.get(backend)
    role, password = f"zs_lp_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    with _admin(server, server.databases["intranet"]).connect() as conn:
        if backend == "postgresql":
            conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        else:
            conn.exec_driver_sql(f"CREATE USER '{role}'@'%%' IDENTIFIED BY '{password}'")
    owner = {"intranet": demo.intranet, "internet": demo.internet}
    for zone, engine in owner.items():
        statements = grant_statements(zone, engine, all_mappings().values(), role)  # type: ignore[arg-type]
        with _admin(server, server.databases[zone]).connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement.replace("%", "%%"))
    urls = {
        zone: server.admin_url.set(username=role, password=password, database=server.databases[zone]).render_as_string(
            hide_password=False
        )
        for zone in owner
    }
    limited = ZonePair(backend, backend, urls["intranet"], urls["internet"], (password, *demo.passwords))
    use_zones(limited, modules="zonesync.schemas.examples")
    yield limited
    limited.dispose()
    for zone in owner:
        with _admin(server, server.databases[zone]).connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f"DROP OWNED BY {role}")  # its grants (it owns nothing)
    with _admin(server, server.databases["intranet"]).connect() as conn:
        conn.exec_driver_sql(f"DROP ROLE {role}" if backend == "postgresql" else f"DROP USER '{role}'@'%%'")


def test_the_role_cannot_do_what_it_was_not_granted(least: ZonePair) -> None:
    """The check of the check: the role really is limited (no DDL, no deleting rows)."""
    for statement in ("CREATE TABLE zs_not_allowed (id INTEGER)", "DELETE FROM merchant"):
        with pytest.raises(sa.exc.DBAPIError), least.intranet.begin() as conn:
            conn.exec_driver_sql(statement)


def test_retry_sync_and_the_end_day_check_run_as_the_role(least: ZonePair, demo: ZonePair) -> None:
    seed(demo.intranet, "merchant", demo_data.merchants(30), ("merchant_id",))
    seed(demo.internet, "payment", demo_data.payments(60), ("payment_id",))

    sync = retry_sync(mappings=["merchants"])
    end_day = end_day_check(business_date=DEMO_BUSINESS_DATE)

    merchants = sync["merchants"]
    assert (merchants.status, merchants.upserted, merchants.quarantined) == ("partial", 29, 1), merchants.message
    assert len(rows(demo.internet, "merchant")) == 29  # demo merchant 13 is invalid
    assert end_day.status == "PARTIAL", end_day.message  # the demo's invalid payments are quarantined
    [payments] = end_day.mappings
    assert (payments.status, payments.upserted, payments.quarantined) == ("partial", 46, 2), payments.message


def test_the_http_api_pushes_updates_and_audits_as_the_role(least: ZonePair, demo: ZonePair) -> None:
    for client in serve():
        assert post(client, RECORD % (1, "A")).status_code == 201
        patched = client.patch(
            "/mappings/merchants/records", content='{"key": {"merchant_id": 1}, "changes": {"status": "I"}}',
            headers={"content-type": "application/json"},
        )  # fmt: skip
        assert patched.status_code == 200, patched.text
    [merchant] = rows(demo.internet, "merchant")
    assert merchant["status"] == "I"
    assert [row["operation"] for row in rows(demo.intranet, "api_audit")] == ["push", "update"]


def test_the_command_line_flows_and_recover_after_a_crash_run_as_the_role(
    least: ZonePair, demo: ZonePair, flow_cli: Cli
) -> None:
    """`flow_cli`: the commands use the session's Prefect server (a crashed command started none to leave behind)."""
    cli = flow_cli
    seed(demo.intranet, "merchant", demo_data.merchants(3), ("merchant_id",))
    as_role = zone_settings(least)
    assert cli("retry", **as_role).code == 0
    pushed = cli("push", "merchants", "--json", RECORD % (50, "A"), **as_role)
    assert pushed.code == 0, pushed
    without_2pc = cli("update", "merchants", "--key", '{"merchant_id": 50}', "--changes", '{"status": "I"}',
                      ZONESYNC_TWO_PHASE="false", **as_role)  # fmt: skip
    assert without_2pc.code == 0, without_2pc

    crashed = cli(
        "update", "merchants", "--key", '{"merchant_id": 1}', "--changes", '{"status": "I"}',
        ZONESYNC_FAULT="update:prepared", **as_role,  # both sides prepared, the commit decided
    )  # fmt: skip
    recovered = cli("recover", **as_role)

    assert crashed.code == 70, crashed
    assert recovered.code == 0, recovered
    source = {row["merchant_id"]: row for row in rows(demo.intranet, "merchant")}
    target = {row["merchant_id"]: row for row in rows(demo.internet, "merchant")}
    assert source[1]["status"] == target[1]["status"] == "I"  # recovery committed both prepared transactions
    assert source[50]["status"] == target[50]["status"] == "I"


def test_zonesync_grants_prints_only_grants_of_table_privileges(demo: ZonePair, cli: Cli, backend: str) -> None:
    run = cli("grants", "--role", "zs_reader")

    assert run.code == 0, run
    statements = [line for line in run.stdout.splitlines() if line and not line.startswith("--")]
    headers = [line for line in run.stdout.splitlines() if line.startswith("-- the ")]
    assert [header.split(" (")[0] for header in headers] == ["-- the intranet zone", "-- the internet zone"]
    assert all(statement.startswith("GRANT ") and statement.endswith(";") for statement in statements)
    forbidden = ("ALL", "SUPERUSER", "OWNER", "DROP", "ALTER", "CREATE ROLE", "CREATE USER", "GRANT OPTION", "FILE")
    assert not [s for s in statements if any(word in s.upper().replace("CREATE TEMPORARY", "") for word in forbidden)]
    update_of_merchant = next(s for s in statements if s.startswith("GRANT UPDATE (") and "merchant" in s)
    assert "merchant_id" not in update_of_merchant  # never a key
    # DELETE only where rows end by design: leases given back, idempotency answers past their retention.
    deletable = ("sync_lease", "api_idempotency")
    assert all(any(table in s and "DELETE" in s for s in statements) for table in deletable)
    assert not any("DELETE" in s for s in statements if not any(table in s for table in deletable))

    wrong = cli("grants", "--zone", "dmz")
    assert wrong.code == 2 and "--zone 'dmz': choose intranet or internet" in wrong.stderr
