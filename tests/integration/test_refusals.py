"""A refusal names its column and its constraint, once, wherever it is reported (the result, the CLI, the flow
run's log and state, sync_error), with the reason code once; never the value that was refused.

Each database is asked for real: its own error for a duplicate, a missing value, a broken CHECK and a value that
does not fit, read by its dialect (`DriverErrors.refused_at`)."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import ZonePair
from tests.integration.console import InProcessCli
from tests.integration.helpers import errors_by_key, execute, seed, sync
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.dialects.driver_errors import RefusedAt
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones.engines import dialect_for
from zonesync.tasks.zones.failures import refusal_reason, refused_at, translate

SECRET = "secret-value"  # in every refused value: it must never be repeated

TABLE = {
    "postgresql": "CREATE TABLE refusing (id integer PRIMARY KEY, email varchar(50) CONSTRAINT refusing_email_key "
    "UNIQUE, name varchar(20) NOT NULL, status varchar(20) CONSTRAINT refusing_status_ok CHECK (status IN ('A', 'I')))",
    "mariadb": "CREATE TABLE refusing (id integer PRIMARY KEY, email varchar(50), name varchar(20) NOT NULL, "
    "status varchar(20), UNIQUE KEY refusing_email_key (email), "
    "CONSTRAINT refusing_status_ok CHECK (status IN ('A', 'I')))",
    "sqlite": "CREATE TABLE refusing (id integer PRIMARY KEY, email varchar(50) CONSTRAINT refusing_email_key "
    "UNIQUE, name varchar(20) NOT NULL, status varchar(20) CONSTRAINT refusing_status_ok CHECK (status IN ('A', 'I')))",
}
FIRST = {"id": 1, "email": f"{SECRET}@example.com", "name": "first", "status": "A"}

# (the row that is refused, the reason, where each database says it was refused)
EMAIL_TAKEN = {"id": 2, "email": FIRST["email"], "name": "second", "status": "A"}
NO_NAME = {"id": 3, "email": "c@example.com", "name": None, "status": "A"}
BAD_STATUS = {"id": 4, "email": "d@example.com", "name": "fourth", "status": f"{SECRET}"}
LONG_NAME = {"id": 5, "email": "e@example.com", "name": SECRET * 3, "status": "A"}
CASES: dict[str, list[tuple[dict[str, Any], str, dict[str, RefusedAt]]]] = {
    "duplicate": [(EMAIL_TAKEN, "duplicate_key", {
        "postgresql": RefusedAt(("email",), "refusing_email_key"),
        "mariadb": RefusedAt((), "refusing_email_key"),  # MariaDB names the unique key only
        "sqlite": RefusedAt(("email",)),  # SQLite names the columns only
    })],
    "missing": [(NO_NAME, "missing_required", {
        "postgresql": RefusedAt(("name",)), "mariadb": RefusedAt(("name",)), "sqlite": RefusedAt(("name",)),
    })],
    "check": [(BAD_STATUS, "invalid_value", {
        "postgresql": RefusedAt((), "refusing_status_ok"),
        "mariadb": RefusedAt((), "refusing_status_ok"),
        "sqlite": RefusedAt((), "refusing_status_ok"),
    })],
}  # fmt: skip


def refused(engine: Engine, row: dict[str, Any]) -> BaseException:
    """The database's own error for inserting `row`."""
    table = sa.Table("refusing", sa.MetaData(), autoload_with=engine)
    with pytest.raises(sa.exc.DBAPIError) as raised, engine.begin() as conn:
        conn.execute(table.insert(), [row])
    return raised.value


@pytest.mark.parametrize("case", CASES)
def test_each_database_names_the_column_or_constraint_it_refused_a_row_for(
    zones: ZonePair, backend: str, case: str
) -> None:
    execute(zones.internet, TABLE[backend])
    execute(zones.internet, sa.text("INSERT INTO refusing VALUES (:id, :email, :name, :status)"), FIRST)
    for row, reason, where in CASES[case]:
        exc = refused(zones.internet, row)

        assert refusal_reason(exc) == reason and refused_at(exc) == where[backend], str(exc)
        told = translate(exc, what="insert into internet table 'refusing'", mapping="m").for_caller
        for name in (*where[backend].columns, where[backend].constraint):
            if name:
                assert told.count(repr(name)) == 1, told
        assert reason not in told and SECRET not in told, told  # the code is added once by whoever reports it


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
def test_a_value_too_long_for_its_column_is_named_where_the_database_names_it(zones: ZonePair, backend: str) -> None:
    execute(zones.internet, TABLE[backend])
    exc = refused(zones.internet, LONG_NAME)

    told = translate(exc, what="insert", mapping="m").for_caller
    assert refusal_reason(exc) == "invalid_value" and SECRET not in told, told
    if backend == "mariadb":  # "Data too long for column 'name' at row 1"; PostgreSQL names no column here
        assert refused_at(exc) == RefusedAt(("name",)) and "column 'name'" in told, told


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_copy_names_the_column_of_the_value_it_refused(zones: ZonePair) -> None:
    execute(zones.internet, TABLE["postgresql"])
    table = sa.Table("refusing", sa.MetaData(), autoload_with=zones.internet)
    dialect = dialect_for(zones.internet)
    frame = pl.DataFrame([LONG_NAME])

    with pytest.raises(Exception) as raised, zones.internet.begin() as conn:
        dialect.bulk_load(conn, table, frame)

    assert refused_at(raised.value) == RefusedAt(("name",)), str(raised.value)
    assert "column 'name'" in translate(raised.value, what="COPY").for_caller


# How each database names the demo's unique login email (MariaDB names the key, SQLite the column).
NAMED = {"postgresql": "column 'email' (constraint 'ux_merchant_login_email')",
         "mariadb": "(constraint 'ux_merchant_login_email')", "sqlite": "column 'email'"}  # fmt: skip


def test_a_quarantined_row_names_the_constraint_the_target_refused_it_for(demo: ZonePair) -> None:
    """The retry's sync_error entry for a row the target refused says which column and constraint, in zonesync's
    words, and not the value (the demo's internet merchant table has one login email per merchant)."""
    rows = demo_data.merchants(3).with_columns(pl.lit(f"{SECRET}@example.com").alias("email"))
    seed(demo.intranet, "merchant", rows, ["merchant_id"])

    report = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=100)

    assert (report.flagged, report.quarantined) == (1, 2)
    details = [entry["detail"] for entry in errors_by_key(demo.intranet, MERCHANTS).values()]
    assert all(NAMED[demo.internet_backend] in detail and SECRET not in detail for detail in details), details


def test_a_rolled_back_update_names_the_column_and_gives_its_reason_once(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    """The demo's refused update (#2 takes #3's login email): the CLI line, the flow run's error log and its
    RolledBack state each name the column and say duplicate_key once."""
    demo_data.seed_demo(demo_zones.intranet, demo_zones.internet)
    assert flow_cli_in_process("retry").code == 3  # the demo's invalid merchants are quarantined

    run = flow_cli_in_process(
        "update", "merchants", "--key", '{"merchant_id": 2}', "--changes", '{"email": "merchant3@example.com"}'
    )

    assert run.code == 1, str(run)
    shown = run.stdout + run.stderr
    assert NAMED[demo_zones.internet_backend] in run.stdout and run.stdout.count("duplicate_key") == 1, shown
    error_lines = [line for line in shown.splitlines() if "rolled back" in line and "ERROR" in line]
    assert error_lines and all(line.count("duplicate_key") == 1 for line in error_lines), shown
    assert "merchant3@example.com" not in shown
