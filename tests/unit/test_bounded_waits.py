"""Bounded waits without a server: the settings, what each driver and connectorx are given, URL parameters,
the clear lines of timeout errors, the connectorx deadline and the per-zone circuit breaker."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from zonesync.schemas.errors import ConfigError, NoAnswer
from zonesync.schemas.settings import get_settings
from zonesync.tasks.dialects import database, reading
from zonesync.tasks.dialects import limits as dialect_limits
from zonesync.tasks.dialects.limits import STATEMENT_GRACE_SECONDS, Limits
from zonesync.tasks.dialects.reading import read_within_deadline
from zonesync.tasks.zones import breaker, engines, profiles
from zonesync.tasks.zones.engines import create_engine, dialect_for, parse_url
from zonesync.tasks.zones.failures import diagnosis, is_transient, translate

LIMITS = Limits(connect=3.5, statement=4.25, lock=1.5)
PG = "postgresql://sync:s3cret@db:5432/pay"
MY = "mysql://sync:s3cret@db:3306/pay"


def connect_args(url: URL, limits: Limits) -> dict[str, Any]:
    """What the URL's database gives its driver."""
    found = database(url.get_backend_name())
    assert found is not None
    return found.connecting.connect_args(url, limits)


def connectorx_url(engine: Engine) -> str:
    return dialect_for(engine).connecting.connectorx_url(engine.url, profiles.limits_of(engine))


def connectorx_query(engine: Engine, sql: str) -> str:
    return dialect_for(engine).connecting.connectorx_query(sql, profiles.limits_of(engine))


# -- settings ----------------------------------------------------------------------------------------------------
def test_the_limits_default_to_10_s_connect_300_s_statement_30_s_lock() -> None:
    assert Limits.from_settings() == Limits(connect=10, statement=300, lock=30)


def test_the_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONESYNC_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("ZONESYNC_STATEMENT_TIMEOUT", "0.5")
    monkeypatch.setenv("ZONESYNC_LOCK_TIMEOUT", "45")
    assert Limits.from_settings(get_settings()) == Limits(connect=2, statement=0.5, lock=45)


@pytest.mark.parametrize("name", ["CONNECT_TIMEOUT", "STATEMENT_TIMEOUT", "LOCK_TIMEOUT"])
@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "1e9", "soon"])
def test_a_limit_that_is_not_a_positive_number_of_seconds_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str
) -> None:
    monkeypatch.setenv(f"ZONESYNC_{name}", raw)
    with pytest.raises(ConfigError, match=f"ZONESYNC_{name}"):
        get_settings()


CUSTOM_PLANS = "-c plan_cache_mode=force_custom_plan"  # a plan made for an empty table is never kept


# -- what each driver is given -----------------------------------------------------------------------------------
def test_postgresql_gets_the_connect_timeout_and_timeouts_and_custom_plans_in_options_utc_last() -> None:
    args = connect_args(parse_url(PG, setting="S"), LIMITS)
    assert args == {
        "connect_timeout": 4,  # libpq takes whole seconds: rounded up
        "options": f"-c statement_timeout=4250 -c lock_timeout=1500 {CUSTOM_PLANS} -c timezone=UTC",
    }


def test_postgresql_url_options_are_merged_not_replaced() -> None:
    url = parse_url(PG + "?options=-c%20application_name%3Dzs%20-c%20lock_timeout%3D9000", setting="S")
    options = connect_args(url, LIMITS)["options"]
    assert options == (
        f"-c statement_timeout=4250 -c lock_timeout=1500 {CUSTOM_PLANS} -c application_name=zs -c lock_timeout=9000 "
        "-c timezone=UTC"
    )  # the URL's own come after zonesync's (they win), UTC last (every connection runs in UTC)


def test_mariadb_gets_connect_read_and_write_timeouts_and_the_session_limits() -> None:
    args = connect_args(parse_url(MY, setting="S"), LIMITS)
    assert args["connect_timeout"] == 3.5
    assert args["read_timeout"] == args["write_timeout"] == 4.25 + STATEMENT_GRACE_SECONDS
    command = args["init_command"]
    assert command.startswith("SET time_zone = '+00:00', sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), ")
    assert "innodb_lock_wait_timeout = 2, lock_wait_timeout = 2" in command  # whole seconds, rounded up
    assert command.endswith(" /*M!100108 , max_statement_time = 4.250 */")  # MariaDB only: MySQL skips it
    assert (args["local_infile"], args["charset"]) == (True, "utf8mb4")


def test_sqlite_waits_for_a_lock_as_long_as_the_lock_timeout(tmp_path: Path) -> None:
    url = parse_url(f"sqlite:///{tmp_path}/zone.db", setting="S")
    assert connect_args(url, LIMITS) == {"timeout": 1.5, "check_same_thread": False}
    engine = create_engine(url, limits=LIMITS)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 1500
    engine.dispose()


def test_create_engine_takes_the_settings_limits_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONESYNC_LOCK_TIMEOUT", "7")
    engine = create_engine(parse_url(PG, setting="S"), zone="internet")
    assert profiles.limits_of(engine).lock == 7
    assert profiles.label_of(engine) == "the internet zone"
    assert profiles.label_of(sa.create_engine(parse_url(PG, setting="S"))) == "the postgresql database at db:5432"


# -- what connectorx is given ------------------------------------------------------------------------------------
def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_connectorx_gets_the_same_postgresql_options_percent_encoded() -> None:
    url = parse_url(PG + "?options=-c%20application_name%3Dzs&sslmode=prefer", setting="S")
    engine = create_engine(url, limits=LIMITS)
    rendered = connectorx_url(engine)
    assert "+" not in rendered.partition("?")[2]  # connectorx does not decode '+' as a space
    assert "%20" in rendered
    assert _query(rendered) == {
        "options": [connect_args(url, LIMITS)["options"]],
        "connect_timeout": ["4"],
        "sslmode": ["prefer"],
    }


def test_connectorx_gets_the_mariadb_connect_timeout_over_tcp_and_the_limits_with_the_query() -> None:
    engine = create_engine(parse_url(MY, setting="S"), limits=LIMITS)
    assert _query(connectorx_url(engine)) == {"tcp_connect_timeout_ms": ["3500"], "prefer_socket": ["false"]}
    assert connectorx_query(engine, "SELECT 1") == (
        "/*M!100301 SET STATEMENT time_zone='+00:00', max_statement_time=4.250, innodb_lock_wait_timeout=2, "
        "lock_wait_timeout=2 FOR */"
        " SELECT 1"
    )
    assert connectorx_query(create_engine(parse_url(PG, setting="S")), "SELECT 1") == "SELECT 1"


# -- URL parameters: reach both readers or are refused ----------------------------------------------------------
@pytest.mark.parametrize(
    "query", ["options=-c%20work_mem%3D64MB", "sslmode=require", "application_name=zs&keepalives_idle=30"]
)
def test_postgresql_parameters_both_readers_take_are_accepted(query: str) -> None:
    assert parse_url(f"{PG}?{query}", setting="S").query


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        (PG + "?client_encoding=UTF8", "client_encoding"),  # psycopg takes it, connectorx fails on it
        (PG + "?keepalives_count=3", "keepalives_count"),
        (PG + "?password=hunter2", "password"),
        (MY + "?ssl_cert=/etc/client.pem", "ssl_cert"),  # PyMySQL would present it, connectorx cannot
        (MY + "?charset=utf8mb4", "charset"),
        ("sqlite:////tmp/zone.db?mode=ro", "mode"),
    ],
)
def test_parameters_one_reader_would_ignore_or_fail_on_are_refused_by_name(raw: str, refused: str) -> None:
    with pytest.raises(ConfigError, match=rf"ZONESYNC_INTERNET_URL: URL parameter '{refused}' is not supported"):
        parse_url(raw, setting="ZONESYNC_INTERNET_URL")


@pytest.mark.parametrize(
    ("raw", "setting"),
    [
        (PG + "?connect_timeout=3", "ZONESYNC_CONNECT_TIMEOUT"),
        ("sqlite:////tmp/z.db?timeout=3", "ZONESYNC_LOCK_TIMEOUT"),
    ],
)
def test_url_parameters_owned_by_a_setting_point_at_it(raw: str, setting: str) -> None:
    with pytest.raises(ConfigError, match=f"ZONESYNC_INTRANET_URL: set the .* URL parameter with {setting} instead"):
        parse_url(raw, setting="ZONESYNC_INTRANET_URL")


def test_a_repeated_url_parameter_is_refused_without_its_value() -> None:
    with pytest.raises(ConfigError, match="given more than once") as info:
        parse_url(PG + "?sslkey=/secret/a.key&sslkey=/secret/b.key", setting="S")
    assert "/secret" not in str(info.value)


# -- clear lines -------------------------------------------------------------------------------------------------
PROFILE = profiles.EngineProfile("the internet zone", LIMITS)


@pytest.mark.parametrize(
    ("error", "expected", "silent"),
    [
        (
            psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
            "canceling statement due to statement timeout (ZONESYNC_STATEMENT_TIMEOUT=4.25s)",
            False,
        ),
        (
            psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
            "canceling statement due to lock timeout (ZONESYNC_LOCK_TIMEOUT=1.5s)",
            False,
        ),
        (
            pymysql.err.OperationalError(1969, "Query execution was interrupted (max_statement_time exceeded)"),
            "Query execution was interrupted (max_statement_time exceeded) (ZONESYNC_STATEMENT_TIMEOUT=4.25s)",
            False,
        ),
        (
            pymysql.err.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction"),
            "Lock wait timeout exceeded; try restarting transaction (ZONESYNC_LOCK_TIMEOUT=1.5s)",
            False,
        ),
        (
            pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query (timed out)"),
            "no answer from the internet zone within ZONESYNC_STATEMENT_TIMEOUT=4.25s + 2s: connection given up",
            True,
        ),
    ],
    ids=["pg-statement", "pg-lock", "mariadb-statement", "mariadb-lock", "mariadb-read-timeout"],
)
def test_limit_errors_get_one_clear_line_naming_the_setting(error: Exception, expected: str, silent: bool) -> None:
    assert diagnosis(error, PROFILE, connecting=False) == (expected, silent)


def test_a_connect_timeout_names_the_zone_and_the_setting() -> None:
    error = psycopg.OperationalError("connection timeout expired")
    assert diagnosis(error, PROFILE, connecting=True) == (
        "no answer from the internet zone within ZONESYNC_CONNECT_TIMEOUT=3.5s",
        True,
    )
    assert diagnosis(psycopg.errors.UniqueViolation("duplicate key"), PROFILE, connecting=False) is None


# -- the connectorx deadline -------------------------------------------------------------------------------------
def test_a_read_that_never_returns_is_given_up_after_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dialect_limits, "STATEMENT_GRACE_SECONDS", 0.1)  # the deadline
    monkeypatch.setattr(reading, "STATEMENT_GRACE_SECONDS", 0.1)  # its message
    engine = create_engine(parse_url(PG, setting="S"), zone="internet", limits=Limits(0.2, 0.3, 1))
    dialect = dialect_for(engine)  # handed the engine's limits and label when built
    never = threading.Event()
    started = time.monotonic()
    with pytest.raises(NoAnswer) as info:
        read_within_deadline(never.wait, dialect.limits, dialect.label)
    assert 0.55 <= time.monotonic() - started < 2
    assert str(info.value) == (
        "reading from the internet zone took longer than ZONESYNC_STATEMENT_TIMEOUT=0.3s "
        "(+ 0.1s, + ZONESYNC_CONNECT_TIMEOUT=0.2s to connect): no answer"
    )
    assert is_transient(info.value)
    left = [thread for thread in threading.enumerate() if thread.name == "zonesync-read"]
    assert left and all(thread.daemon for thread in left)  # never holds up the interpreter's exit
    never.set()


def test_a_read_within_its_deadline_returns_its_value_or_raises_its_error() -> None:
    assert read_within_deadline(lambda: 42, LIMITS, "the internet zone") == 42
    with pytest.raises(ZeroDivisionError):
        read_within_deadline(lambda: 1 / 0, LIMITS, "the internet zone")


# -- the circuit breaker -----------------------------------------------------------------------------------------
@pytest.fixture
def fresh_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    breaker.reset()
    monkeypatch.setattr(breaker, "OPEN_SECONDS", 0.2)


@pytest.mark.usefixtures("fresh_breaker")
def test_a_zone_that_failed_is_skipped_then_tried_once_again() -> None:
    assert breaker.allow("internet")
    breaker.failed("internet")
    assert not breaker.allow("internet")
    assert breaker.allow("intranet")  # each zone on its own
    time.sleep(0.25)
    assert breaker.allow("internet")  # this caller tries...
    assert not breaker.allow("internet")  # ...the others keep skipping meanwhile
    breaker.succeeded("internet")
    assert breaker.allow("internet")


@pytest.mark.usefixtures("fresh_breaker")
def test_with_a_probe_no_caller_waits_the_zone_is_tried_in_the_background() -> None:
    breaker.failed("internet")
    time.sleep(0.25)
    probed = threading.Event()
    assert not breaker.allow("internet", probe=probed.set)  # the probe connects, not the caller
    assert probed.wait(2)
    deadline = time.monotonic() + 2
    while not breaker.allow("internet"):
        assert time.monotonic() < deadline, "the probe's success did not close the breaker"
        time.sleep(0.01)


@pytest.mark.usefixtures("fresh_breaker")
def test_a_failed_probe_keeps_the_zone_skipped() -> None:
    breaker.failed("internet")
    time.sleep(0.25)
    done = threading.Event()

    def still_down() -> None:
        done.set()
        raise ConnectionRefusedError

    assert not breaker.allow("internet", probe=still_down)
    assert done.wait(2)
    time.sleep(0.05)
    assert not breaker.allow("internet")


def test_held_connections_skip_a_zone_that_just_failed_to_connect(fresh_breaker: None) -> None:
    engine = create_engine(parse_url("postgresql://zs:secret-pw@127.0.0.1:1/nowhere", setting="S"), limits=LIMITS)
    with engines.HeldConnections("merchants") as held, pytest.raises(Exception) as first:
        held.get(engine, "internet")
    assert "connecting to the internet zone failed" in str(first.value)
    started = time.monotonic()
    with engines.HeldConnections("merchants") as held, pytest.raises(Exception) as second:
        held.get(engine, "internet")
    assert time.monotonic() - started < 0.1
    assert "connecting to the internet zone skipped" in str(second.value)
    assert is_transient(second.value) and "secret-pw" not in str(second.value)


def test_translate_uses_the_clear_line_of_a_limit_error() -> None:
    error = psycopg.errors.QueryCanceled("canceling statement due to statement timeout\nCONTEXT: x")
    text, silent = diagnosis(error, PROFILE, connecting=False) or ("", False)
    engines._mark(error, text, silent)
    assert str(translate(error, what="upserting into 'merchant'")) == (
        "upserting into 'merchant' failed: canceling statement due to statement timeout "
        "(ZONESYNC_STATEMENT_TIMEOUT=4.25s)"
    )
