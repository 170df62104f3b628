"""Engines: URL normalisation, and URLs that never leak into errors or logs."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from zonesync.schemas.errors import ConfigError
from zonesync.schemas.settings import Settings
from zonesync.tasks.zones import engines
from zonesync.tasks.zones.engines import (
    create_engine,
    describe,
    dialect_for,
    in_transaction,
    parse_url,
    zone_setting,
    zone_url,
)
from zonesync.tasks.zones.profiles import limits_of


@pytest.mark.parametrize(
    ("raw", "backend", "driver"),
    [
        ("postgresql://sync:pw@db:5432/pay", "postgresql", "psycopg"),
        ("postgres://sync:pw@db:5432/pay", "postgresql", "psycopg"),
        ("postgresql+psycopg2://sync:pw@db:5432/pay", "postgresql", "psycopg"),
        ("postgresql+psycopg://sync:pw@db:5432/pay", "postgresql", "psycopg"),
        ("mysql://sync:pw@db:3306/pay", "mysql", "pymysql"),
        ("mysql+mysqldb://sync:pw@db:3306/pay", "mysql", "pymysql"),
        ("mariadb://sync:pw@db:3306/pay", "mariadb", "pymysql"),
        ("mariadb+mariadbconnector://sync:pw@db:3306/pay", "mariadb", "pymysql"),
    ],
)
def test_server_urls_get_the_drivers_zonesync_uses(raw: str, backend: str, driver: str) -> None:
    url = parse_url(raw, setting="ZONESYNC_INTRANET_URL")
    assert url.get_backend_name() == backend
    assert url.get_driver_name() == driver
    assert sa.create_engine(url).dialect.driver == driver
    assert (url.username, url.password, url.host, url.database) == ("sync", "pw", "db", "pay")


def test_a_relative_sqlite_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = parse_url("sqlite:///.zonesync/intranet.db", setting="ZONESYNC_INTRANET_URL")
    assert url.database == str(tmp_path.resolve() / ".zonesync" / "intranet.db")


def test_an_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    path = tmp_path.resolve() / "zones" / "internet.db"
    assert parse_url(f"sqlite:///{path}", setting="S").database == str(path)


@pytest.mark.parametrize("raw", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"ZONESYNC_INTERNET_URL.*in-memory"):
        parse_url(raw, setting="ZONESYNC_INTERNET_URL")


@pytest.mark.parametrize(
    "raw",
    [
        "oracle://scott:hunter2@db.internal:1521/orcl",
        "mssql+pyodbc://scott:hunter2@db.internal/pay",
        "not a url, password hunter2 at db.internal",
        "postgresql://scott:hunter2@db.internal:port/pay",
    ],
    ids=["oracle", "mssql", "garbage", "bad-port"],
)
def test_bad_urls_are_config_errors_that_do_not_repeat_the_url(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_url(raw, setting="ZONESYNC_INTRANET_URL")
    message = str(info.value)
    assert "ZONESYNC_INTRANET_URL" in message
    assert "hunter2" not in message
    assert "db.internal" not in message
    assert "scott" not in message


def test_an_unsupported_database_is_named() -> None:
    with pytest.raises(ConfigError, match="'oracle'"):
        parse_url("oracle://scott:hunter2@db/orcl", setting="S")


def test_zone_url_reads_the_zone_setting(tmp_path: Path) -> None:
    settings = Settings(
        intranet_url=SecretStr("postgres://sync:pw@core/pay"), internet_url=SecretStr(f"sqlite:///{tmp_path}/i.db")
    )
    assert zone_url("intranet", settings).drivername.startswith("postgresql")
    assert zone_url("internet", settings).get_backend_name() == "sqlite"


def test_zone_url_errors_name_the_environment_variable() -> None:
    settings = Settings(internet_url=SecretStr("oracle://scott:hunter2@db/orcl"))
    with pytest.raises(ConfigError) as info:
        zone_url("internet", settings)
    assert zone_setting("internet") == "ZONESYNC_INTERNET_URL"
    assert "ZONESYNC_INTERNET_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_describe_hides_the_password() -> None:
    url = parse_url("postgresql://sync:s3cret@db:5432/pay", setting="S")
    assert describe(url) == "postgresql://sync:***@db:5432/pay"
    assert describe(sa.create_engine(url)) == "postgresql://sync:***@db:5432/pay"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://sync:s3cret@db:5432/pay", "postgresql://sync:s3cret@db:5432/pay"),
        ("mysql+pymysql://sync:s3cret@db:3306/pay", "mysql://sync:s3cret@db:3306/pay"),
        ("mariadb+pymysql://sync:s3cret@db:3306/pay", "mysql://sync:s3cret@db:3306/pay"),
        ("postgresql+psycopg://sync:p%40ss@db/pay", "postgresql://sync:p%40ss@db/pay"),
        ("sqlite:////var/lib/zonesync/intranet.db", "sqlite:///var/lib/zonesync/intranet.db"),
    ],
    ids=["postgresql", "mysql", "mariadb", "escaped-password", "sqlite"],
)
def test_connectorx_url_has_no_driver_suffix(url: str, expected: str) -> None:
    # The query (the engine's limits) is tested in test_bounded_waits.py.
    engine = sa.create_engine(url)
    assert dialect_for(engine).connecting.connectorx_url(engine.url, limits_of(engine)).partition("?")[0] == expected


def test_create_engine_makes_the_sqlite_directory_without_connecting(tmp_path: Path) -> None:
    url = parse_url(f"sqlite:///{tmp_path}/zones/intranet.db", setting="S")
    engine = create_engine(url)
    assert (tmp_path / "zones").is_dir()
    assert not (tmp_path / "zones" / "intranet.db").exists()
    assert engine.url.database == url.database


def _sqlite_engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(parse_url(f"sqlite:///{tmp_path}/zone.db", setting="S"))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    return engine


def _values(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars())


def test_a_transaction_whose_connection_dies_before_its_commit_runs_once_more(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    attempts: list[int] = []

    def work(conn: sa.Connection) -> int:
        attempts.append(len(attempts) + 1)
        conn.exec_driver_sql(f"INSERT INTO t VALUES ({10 + len(attempts)})")
        if len(attempts) == 1:
            conn.connection.dbapi_connection.close()  # type: ignore[union-attr]  # the connection is lost mid-way
            conn.exec_driver_sql("SELECT 1")
        return len(attempts)

    assert in_transaction(engine, work) == 2
    assert _values(engine) == [12]  # the first attempt's insert was never committed


def test_a_connection_held_by_the_caller_is_replaced_when_it_dies(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    with engine.connect() as held:
        held.connection.dbapi_connection.close()  # type: ignore[union-attr]
        in_transaction(held, lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES (1)"))
        in_transaction(held, lambda conn: conn.exec_driver_sql("INSERT INTO t VALUES (2)"))
    assert _values(engine) == [1, 2]


def test_a_transaction_is_not_run_again_for_other_errors_or_a_second_lost_connection(tmp_path: Path) -> None:
    engine = _sqlite_engine(tmp_path)
    calls: list[str] = []

    def duplicate(conn: sa.Connection) -> None:
        calls.append("duplicate")
        conn.exec_driver_sql("INSERT INTO t VALUES (1), (1)")

    def always_lost(conn: sa.Connection) -> None:
        calls.append("lost")
        conn.connection.dbapi_connection.close()  # type: ignore[union-attr]
        conn.exec_driver_sql("SELECT 1")

    with pytest.raises(sa.exc.IntegrityError):
        in_transaction(engine, duplicate)
    with pytest.raises(sa.exc.DBAPIError) as lost:
        in_transaction(engine, always_lost)
    assert lost.value.connection_invalidated
    assert calls == ["duplicate", "lost", "lost"]
    assert _values(engine) == []


def test_a_pooled_connection_idle_for_a_while_is_pinged_and_replaced_if_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _sqlite_engine(tmp_path)
    with engine.connect() as conn:
        dead = conn.connection.dbapi_connection
    assert dead is not None
    dead.close()  # as a server closing an idle connection would
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)

    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
        assert conn.connection.dbapi_connection is not dead


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sslmode=verify-full&sslrootcert=/ca.pem", "sslmode=verify-full is not supported: connectorx, which reads"),
        ("sslmode=verify-ca", "sslmode=verify-ca needs sslrootcert=<the CA's file>"),
        ("sslmode=sometimes", "sslmode='sometimes' is not one of disable, allow, prefer, require, verify-ca"),
    ],
    ids=["verify-full", "verify-ca-without-ca", "unknown-mode"],
)
def test_a_tls_mode_both_readers_cannot_honour_is_refused_in_one_line(query: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_url(f"postgresql://u@db/x?{query}", setting="ZONESYNC_INTERNET_URL")
    assert str(refused.value).startswith(f"ZONESYNC_INTERNET_URL: {message}")


def test_verify_ca_reaches_connectorx_as_require_with_the_ca_which_verifies_it_there() -> None:
    """connectorx 0.4.6 knows disable, prefer and require; with sslrootcert, require verifies the CA
    (tests/integration/test_database_tls.py shows it on a TLS-only server)."""
    engine = sa.create_engine(parse_url("postgresql://u@db/x?sslmode=verify-ca&sslrootcert=/ca.pem", setting="S"))
    query = parse_qs(urlsplit(dialect_for(engine).connecting.connectorx_url(engine.url, limits_of(engine))).query)
    assert (query["sslmode"], query["sslrootcert"]) == (["require"], ["/ca.pem"])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ssl_mode=verify_identity", "ssl_mode=verify_identity needs ssl_ca=<the CA's file>"),
        ("ssl_mode=sometimes", "ssl_mode='sometimes' is not one of disabled, required, verify_ca, verify_identity"),
        ("ssl_cert=/client.pem", "URL parameter 'ssl_cert' is not supported for mysql (accepted: ssl_ca, ssl_mode)"),
    ],
    ids=["verify-without-ca", "unknown-mode", "client-certificate"],
)
def test_a_mariadb_tls_option_both_readers_cannot_honour_is_refused_in_one_line(query: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_url(f"mysql://u@db/x?{query}", setting="ZONESYNC_INTERNET_URL")
    assert str(refused.value) == f"ZONESYNC_INTERNET_URL: {message}"


@pytest.mark.parametrize(
    ("query", "pymysql", "connectorx"),
    [
        ("", {"ssl": None}, {}),
        ("ssl_mode=disabled&ssl_ca=/ca.pem", {"ssl": None, "ssl_disabled": True}, {"ssl-mode": ["DISABLED"]}),
        ("ssl_ca=/ca.pem", {"ssl": None, "ssl_ca": "/ca.pem", "ssl_verify_cert": True, "ssl_verify_identity": False},
         {"ssl-mode": ["VERIFY_CA"], "ssl-ca": ["/ca.pem"]}),
        ("ssl_mode=verify_identity&ssl_ca=/ca.pem",
         {"ssl": None, "ssl_ca": "/ca.pem", "ssl_verify_cert": True, "ssl_verify_identity": True},
         {"ssl-mode": ["VERIFY_IDENTITY"], "ssl-ca": ["/ca.pem"]}),
    ],
    ids=["drivers-defaults", "disabled", "ca-alone-verifies", "verify-identity"],
)  # fmt: skip
def test_a_mariadb_tls_mode_reaches_pymysql_and_connectorx_in_their_words(
    query: str, pymysql: dict[str, object], connectorx: dict[str, list[str]]
) -> None:
    engine = create_engine(parse_url(f"mysql://u@db/x?{query}".rstrip("?"), setting="S"))
    args = dialect_for(engine).connecting.connect_args(engine.url, limits_of(engine))
    sent = parse_qs(urlsplit(dialect_for(engine).connecting.connectorx_url(engine.url, limits_of(engine))).query)

    assert {name: value for name, value in args.items() if name.startswith("ssl")} == pymysql
    assert {name: value for name, value in sent.items() if name.startswith("ssl")} == connectorx


def test_mariadb_tls_required_encrypts_without_checking_the_certificate() -> None:
    engine = create_engine(parse_url("mysql://u@db/x?ssl_mode=required", setting="S"))
    context = dialect_for(engine).connecting.connect_args(engine.url, limits_of(engine))["ssl"]
    sent = parse_qs(urlsplit(dialect_for(engine).connecting.connectorx_url(engine.url, limits_of(engine))).query)

    assert isinstance(context, ssl.SSLContext)
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_NONE)
    assert sent["ssl-mode"] == ["REQUIRED"]
