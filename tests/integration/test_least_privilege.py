"""The flows, the HTTP API and `recover` run as roles that hold only what `zonesync grants` prints (`--for flows`,
`--for api`), on PostgreSQL and MariaDB: a missing grant fails here, and so does a privilege a role should not
have. The tables are made by their owner, as `zonesync init` is run."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import ServerDatabases, ThrowawayServers, ZonePair, backend_param
from tests.integration.console import Cli, zone_settings
from tests.integration.helpers import execute, rows, seed
from tests.integration.test_http_api import CARRIED_ONLY, RECORD, post, serve
from zonesync.flows.end_day_check import end_day_check
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.registry import all_mappings
from zonesync.tasks.setup import demo_data
from zonesync.tasks.setup.demo_data import DEMO_BUSINESS_DATE
from zonesync.tasks.setup.grants import Part, grant_statements
from zonesync.tasks.setup.triggers import install_delete_capture

pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.parametrize("backend", [backend_param("postgresql"), backend_param("mariadb")]),
]


def _admin(server: ServerDatabases, database: str) -> sa.Engine:
    return sa.create_engine(server.admin_url.set(database=database), isolation_level="AUTOCOMMIT")


RoleZones = Callable[[Part], ZonePair]


@pytest.fixture
def as_role(
    servers: ThrowawayServers, backend: str, demo: ZonePair, use_zones: Callable[..., None]
) -> Iterator[RoleZones]:
    """`as_role(part)`: the demo zones seen by a new role holding exactly the printed grants of that part (the
    settings pointed at it); the returned pair's engines are that role's, `demo`'s the owner's."""
    server = servers.get(backend)
    made: list[tuple[str, ZonePair]] = []

    def make(part: Part) -> ZonePair:
        role, password = f"zs_lp_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
        with _admin(server, server.databases["intranet"]).connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            else:
                conn.exec_driver_sql(f"CREATE USER '{role}'@'%%' IDENTIFIED BY '{password}'")
        for zone, engine in (("intranet", demo.intranet), ("internet", demo.internet)):
            statements = grant_statements(zone, engine, all_mappings().values(), role, part)
            with _admin(server, server.databases[zone]).connect() as conn:
                for statement in statements:
                    conn.exec_driver_sql(statement.replace("%", "%%"))
        urls = {
            zone: server.admin_url.set(username=role, password=password, database=server.databases[zone])
            for zone in ("intranet", "internet")
        }
        shown = {zone: url.render_as_string(hide_password=False) for zone, url in urls.items()}
        limited = ZonePair(backend, backend, shown["intranet"], shown["internet"], (password, *demo.passwords))
        use_zones(limited, modules="zonesync.schemas.examples")
        made.append((role, limited))
        return limited

    yield make
    for role, limited in made:
        limited.dispose()
        for zone in ("intranet", "internet"):
            with _admin(server, server.databases[zone]).connect() as conn:
                if backend == "postgresql":
                    conn.exec_driver_sql(f"DROP OWNED BY {role}")  # its grants (it owns nothing)
        with _admin(server, server.databases["intranet"]).connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE {role}" if backend == "postgresql" else f"DROP USER '{role}'@'%%'")


@pytest.fixture
def least(as_role: RoleZones) -> ZonePair:
    """The flows' role."""
    return as_role("flows")


def _refused(engine: sa.Engine, statement: str) -> bool:
    """Whether the database refuses the statement (run, then rolled back)."""
    with engine.connect() as conn:
        try:
            conn.exec_driver_sql(statement)
        except sa.exc.DBAPIError:
            return True
        finally:
            conn.rollback()
    return False


# What neither role may do: DDL, delete rows of a mapped table, read or change a column that stays in its zone.
NEVER = [
    "CREATE TABLE zs_not_allowed (id INTEGER)",
    "DELETE FROM merchant",
    "SELECT tax_id FROM merchant",
    "SELECT merchant_id FROM merchant WHERE tax_id = 'x'",
    "UPDATE merchant SET tax_id = 'x'",
]
NEVER_INTERNET = ["SELECT client_ip FROM payment", "UPDATE payment SET client_ip = 'x'", "SELECT * FROM payment"]
# What the API's role may not do besides: the batch jobs, resolving or reopening a quarantined record, reading
# its own audit trail, accepting a table's shape.
NOT_THE_API = [
    "SELECT id FROM batch_job",
    "UPDATE batch_job SET status = 'SUCCESS'",
    "INSERT INTO batch_job (job_name, business_date, status, started_at) VALUES ('x', '2026-01-01', 'SUCCESS', "
    "'2026-01-01')",
    "UPDATE sync_error SET resolved_at = last_seen",
    "UPDATE sync_error SET resolved_at = NULL",
    "SELECT id FROM api_audit",
    "UPDATE sync_schema SET accepted_by = 'x'",
]


@pytest.mark.parametrize("part", ["flows", "api"])
def test_the_role_cannot_do_what_it_was_not_granted(as_role: RoleZones, part: Part) -> None:
    """The check of the check: the role really is limited, and it can do what its work needs."""
    limited = as_role(part)
    allowed = [_refused(limited.intranet, statement) for statement in NEVER]
    allowed_internet = [_refused(limited.internet, statement) for statement in NEVER_INTERNET]
    assert allowed == [True] * len(NEVER) and allowed_internet == [True] * len(NEVER_INTERNET)
    api_refused = [_refused(limited.intranet, statement) for statement in NOT_THE_API]
    assert api_refused == [part == "api"] * len(NOT_THE_API)
    assert not _refused(limited.intranet, "SELECT merchant_id, merchant_name, is_sync FROM merchant")
    insert_with_tax_id = (
        "INSERT INTO merchant (merchant_id, merchant_name, status, fee, tax_id, updated_at, is_sync) "
        "VALUES (990, 'x', 'A', 1, 'NPWP', '2026-01-01 00:00:00', false)"
    )
    assert not _refused(limited.intranet, insert_with_tax_id)  # a push writes the whole record


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


def test_the_http_api_pushes_updates_and_audits_as_its_own_role(as_role: RoleZones, demo: ZonePair) -> None:
    as_role("api")
    json = {"content-type": "application/json"}
    for client in serve():
        assert post(client, RECORD % (1, "A")).status_code == 201
        patched = client.patch(
            "/mappings/merchants/records", content='{"key": {"merchant_id": 1}, "changes": {"status": "I"}}',
            headers=json,
        )  # fmt: skip
        assert patched.status_code == 200, patched.text
        assert post(client, RECORD % (2, "X")).status_code == 202  # the target model refuses X: quarantined
        assert post(client, CARRIED_ONLY % (3, "A")).status_code == 201
        again = post(client, f"[{CARRIED_ONLY % (3, 'A')}, {CARRIED_ONLY % (4, 'A')}]")  # compared: carried only
        assert again.status_code == 201, again.text
        keyed = json | {"idempotency-key": "k"}
        replayed = [client.post("/mappings/merchants/records", content=RECORD % (5, "A"), headers=keyed) for _ in "12"]
        assert [answer.status_code for answer in replayed] == [201, 201]
        tax_id = client.patch(
            "/mappings/merchants/records", content='{"key": {"merchant_id": 1}, "changes": {"tax_id": "N"}}',
            headers=json,
        )  # fmt: skip
        assert tax_id.status_code == 422 and "stay in the intranet zone" in tax_id.text, tax_id.text
    merchants = {row["merchant_id"]: row for row in rows(demo.internet, "merchant")}
    assert sorted(merchants) == [1, 3, 4, 5] and merchants[1]["status"] == "I"
    [error] = rows(demo.intranet, "sync_error")
    assert (error["record_key"], error["resolved_at"]) == ('{"merchant_id":2}', None)
    operations = [row["operation"] for row in rows(demo.intranet, "api_audit")]
    assert operations[:2] == ["push", "update"] and len(operations) >= 6
    assert rows(demo.intranet, "batch_job") == []
    assert [row["mapping"] for row in rows(demo.intranet, "sync_schema")] == ["merchants"]  # its first shape


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


@pytest.mark.parametrize(
    ("part", "deletable"),
    [("flows", ("sync_lease", "merchant", "merchant_archive")), ("api", ("sync_lease", "api_idempotency"))],
)
def test_zonesync_grants_prints_only_grants_of_table_privileges(
    demo: ZonePair, cli: Cli, backend: str, part: str, deletable: tuple[str, ...]
) -> None:
    run = cli("grants", "--for", part)

    assert run.code == 0, run
    statements = [line for line in run.stdout.splitlines() if line and not line.startswith("--")]
    headers = [line for line in run.stdout.splitlines() if line.startswith("-- the ")]
    role = "zonesync_api" if part == "api" else "zonesync"
    assert [header.split(" (")[0] for header in headers] == ["-- the intranet zone", "-- the internet zone"]
    assert all(f"{part} role {role}:" in header for header in headers)
    assert all(statement.startswith("GRANT ") and statement.endswith(";") for statement in statements)
    forbidden = ("ALL", "SUPERUSER", "OWNER", "DROP", "ALTER", "CREATE ROLE", "CREATE USER", "GRANT OPTION", "FILE")
    assert not [s for s in statements if any(word in s.upper().replace("CREATE TEMPORARY", "") for word in forbidden)]
    on_merchant = [s for s in statements if re.search(r"\bmerchant\b[`\"]? TO", s)]
    update_of_merchant = next(s for s in on_merchant if s.startswith("GRANT UPDATE ("))
    assert "merchant_id" not in update_of_merchant  # never a key
    assert not [s for s in statements if "tax_id" in s or "client_ip" in s]  # they stay in their zone
    # DELETE only where rows end by design: leases given back, idempotency answers past their retention, and the
    # target of a mapping whose rows are deleted (the demo's merchants are archived: moved, then deleted).
    deleting = {re.search(r" ON (?:TABLE )?\S*?[`\"]?(\w+)[`\"]? TO", s).group(1) for s in statements if "DELETE" in s}
    assert deleting == set(deletable), deleting
    assert any("batch_job" in s for s in statements) == (part == "flows")

    wrong = cli("grants", "--zone", "dmz")
    assert wrong.code == 2 and "--zone 'dmz': choose intranet or internet" in wrong.stderr
    wrong = cli("grants", "--for", "everyone")
    assert wrong.code == 2 and "--for 'everyone': choose flows or api" in wrong.stderr


def test_deletes_are_carried_as_the_role(as_role: RoleZones, demo: ZonePair) -> None:
    """With the delete capture installed (by the owner, as `zonesync init --triggers` runs), the printed grants let
    the flows claim the tombstones and archive the target row."""
    seed(demo.intranet, "merchant", demo_data.merchants(3), ("merchant_id",))
    install_delete_capture(MERCHANTS, demo.intranet)
    as_role("flows")
    assert retry_sync(mappings=["merchants"])["merchants"].flagged == 3

    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 2")  # the application
    merchants = retry_sync(mappings=["merchants"])["merchants"]

    assert (merchants.status, merchants.deletes_applied) == ("success", 1), merchants.message
    assert [row["merchant_id"] for row in rows(demo.internet, "merchant_archive")] == [2]
    assert sorted(row["merchant_id"] for row in rows(demo.internet, "merchant")) == [1, 3]
