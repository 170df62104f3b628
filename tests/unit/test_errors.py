"""The error hierarchy: secrets scrubbed, driver errors classified transient or terminal."""

from __future__ import annotations

import sqlite3

import psycopg
import pymysql
import pytest
import sqlalchemy.exc as sa_exc
from prefect.states import Completed, Failed

from zonesync.schemas.errors import (
    NO_ANSWER,
    ConfigError,
    MappingError,
    RefusedValue,
    SyncError,
    TerminalSyncError,
    TransientSyncError,
    hide_values,
    scrub,
    short_message,
)
from zonesync.tasks.zones.failures import is_transient, translate
from zonesync.tasks.zones.retrying import DEADLOCK_ATTEMPTS, retry_delay, retry_task


def wrapped(kind: type[sa_exc.DBAPIError], driver_error: Exception, **kwargs: object) -> sa_exc.DBAPIError:
    """A driver error as SQLAlchemy raises it."""
    return kind("SELECT 1", {}, driver_error, **kwargs)  # type: ignore[arg-type]


# -- scrub ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("cannot reach postgresql+psycopg://sync:s3cret@db.internal:5432/pay now", "s3cret@db.internal"),
        ("cannot reach mysql://sync:s3cret@dmz/shop", "s3cret"),
        ("bad dsn 'postgresql://u:s3cret@h/db'", "s3cret"),
        ("dsn: host=db user=sync password=s3cret dbname=pay", "s3cret"),
        ("login failed (PASSWORD: s3cret)", "s3cret"),
    ],
    ids=["url", "mysql-url", "quoted-url", "libpq-keywords", "password-colon"],
)
def test_scrub_removes_urls_and_passwords(message: str, secret: str) -> None:
    scrubbed = scrub(message)
    assert secret not in scrubbed
    assert scrubbed != message


def test_scrub_keeps_ordinary_messages() -> None:
    message = 'duplicate key value violates unique constraint "merchant_pkey"'
    assert scrub(message) == message


def test_short_message_is_the_scrubbed_first_line_of_the_driver_error() -> None:
    driver = psycopg.OperationalError("could not translate host name for postgresql://u:s3cret@h/db\nDETAIL: more")
    message = short_message(wrapped(sa_exc.OperationalError, driver))
    assert "s3cret" not in message
    assert "DETAIL" not in message
    assert "[SQL:" not in message
    assert "sqlalche.me" not in message
    assert message.startswith("could not translate host name")


# -- classification ------------------------------------------------------------------------------

PG_DEADLOCK = wrapped(sa_exc.OperationalError, psycopg.errors.DeadlockDetected("deadlock detected"))
PG_UNIQUE = wrapped(
    sa_exc.IntegrityError, psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
)

TRANSIENT = [
    wrapped(sa_exc.OperationalError, psycopg.OperationalError(
        'connection to server at "db" (10.0.0.1), port 5432 failed: Connection refused')),
    wrapped(sa_exc.OperationalError, psycopg.OperationalError("server closed the connection unexpectedly")),
    # What psycopg raises (and SQLAlchemy wraps, not invalidated) when connect_timeout expires.
    wrapped(sa_exc.OperationalError, psycopg.errors.ConnectionTimeout("connection timeout expired")),
    PG_DEADLOCK,
    wrapped(sa_exc.OperationalError, psycopg.errors.SerializationFailure("could not serialize access")),
    wrapped(sa_exc.OperationalError, psycopg.errors.LockNotAvailable("could not obtain lock on row")),
    wrapped(sa_exc.OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
    wrapped(sa_exc.OperationalError, pymysql.err.OperationalError(
        2003, "Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)")),
    wrapped(sa_exc.OperationalError, pymysql.err.OperationalError(2013, "Lost connection to server during query")),
    wrapped(sa_exc.OperationalError, pymysql.err.OperationalError(
        1213, "Deadlock found when trying to get lock; try restarting transaction")),
    wrapped(sa_exc.OperationalError, pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")),
    wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")),
    wrapped(sa_exc.DBAPIError, psycopg.InterfaceError("the connection is lost"), connection_invalidated=True),
    ConnectionResetError("reset by peer"),
    TimeoutError("timed out"),
]  # fmt: skip
TRANSIENT_IDS = [
    "pg-refused", "pg-server-closed", "pg-connect-timeout", "pg-deadlock", "pg-serialization", "pg-lock-not-available",
    "pg-admin-shutdown", "mysql-2003", "mysql-2013", "mysql-deadlock", "mysql-lock-wait", "sqlite-locked",
    "invalidated", "connection-error", "timeout",
]  # fmt: skip

TERMINAL = [
    PG_UNIQUE,
    wrapped(sa_exc.IntegrityError, pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'")),
    wrapped(sa_exc.DataError, psycopg.errors.NumericValueOutOfRange("numeric field overflow")),
    wrapped(sa_exc.DataError, pymysql.err.DataError(1406, "Data too long for column 'name' at row 1")),
    wrapped(sa_exc.ProgrammingError, psycopg.errors.UndefinedTable('relation "merchant" does not exist')),
    wrapped(sa_exc.ProgrammingError, pymysql.err.ProgrammingError(1146, "Table 'shop.merchant' doesn't exist")),
    wrapped(sa_exc.OperationalError, psycopg.OperationalError('password authentication failed for user "sync"')),
    wrapped(sa_exc.IntegrityError, sqlite3.IntegrityError("NOT NULL constraint failed: merchant.name")),
    ValueError("bad value"),
]  # fmt: skip
TERMINAL_IDS = [
    "pg-unique", "mysql-duplicate", "pg-overflow", "mysql-too-long", "pg-no-table", "mysql-no-table",
    "pg-bad-password", "sqlite-not-null", "value-error",
]  # fmt: skip


@pytest.mark.parametrize("error", TRANSIENT, ids=TRANSIENT_IDS)
def test_transient_driver_errors_translate_to_transient(error: Exception) -> None:
    assert is_transient(error)
    translated = translate(error, what="reading merchant", mapping="merchants")
    assert isinstance(translated, TransientSyncError)
    assert translated.transient


@pytest.mark.parametrize("error", TERMINAL, ids=TERMINAL_IDS)
def test_terminal_driver_errors_translate_to_terminal(error: Exception) -> None:
    assert not is_transient(error)
    translated = translate(error, what="upserting merchant", mapping="merchants")
    assert isinstance(translated, TerminalSyncError)
    assert not translated.transient


def test_translated_message_says_what_failed_for_which_mapping() -> None:
    error = wrapped(sa_exc.IntegrityError, pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"))
    translated = translate(error, what="upserting merchant", mapping="merchants")
    assert translated.mapping == "merchants"
    assert str(translated).startswith("mapping 'merchants': upserting merchant failed: ")
    assert "Duplicate entry '…' for key 'PRIMARY' (1062)" in str(translated)  # the value hidden, the key named


def test_translated_message_hides_a_url_the_driver_echoed() -> None:
    driver = psycopg.OperationalError("invalid connection option in postgresql://sync:s3cret@db/pay")
    translated = translate(wrapped(sa_exc.OperationalError, driver), what="connecting")
    assert "s3cret" not in str(translated)


def test_a_sync_error_is_translated_to_itself() -> None:
    error = TransientSyncError("intranet is down", mapping="merchants")
    assert translate(error, what="anything") is error


# -- hierarchy -----------------------------------------------------------------------------------


def test_sync_error_str_names_the_mapping_and_keeps_keys() -> None:
    error = TerminalSyncError("row rejected", mapping="payments", keys=[{"payment_id": 7}])
    assert str(error) == "mapping 'payments': row rejected"
    assert error.keys == ({"payment_id": 7},)


def test_sync_error_without_mapping_is_the_bare_message() -> None:
    assert str(SyncError("nothing to do")) == "nothing to do"


@pytest.mark.parametrize(
    ("kind", "transient"),
    [(TransientSyncError, True), (RefusedValue, False), (TerminalSyncError, False), (ConfigError, False),
     (MappingError, False)],
)  # fmt: skip
def test_error_kinds_are_transient_or_terminal(kind: type[SyncError], transient: bool) -> None:
    error = kind("x")
    assert is_transient(error) is transient
    assert isinstance(error, SyncError)


def test_mapping_errors_are_config_errors() -> None:
    assert issubclass(MappingError, ConfigError)
    assert issubclass(ConfigError, TerminalSyncError)


# -- the one retry policy (tasks/zones/retrying.py) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "retry"),
    [
        (Failed(data=TransientSyncError("zone down")), True),
        (Failed(data=PG_DEADLOCK), True),
        (Failed(data=TerminalSyncError("bad row")), False),
        (Failed(data=PG_UNIQUE), False),
        (Completed(data=3), False),
    ],
    ids=["transient", "driver-deadlock", "terminal", "driver-unique", "completed"],
)
def test_prefect_retries_only_transient_failures(state: object, retry: bool) -> None:
    assert retry_task(None, None, state) is retry


def _deadlock() -> sa_exc.DBAPIError:
    return wrapped(sa_exc.OperationalError, psycopg.errors.DeadlockDetected("deadlock detected"))


def test_a_deadlock_is_run_again_by_its_transaction_then_by_nobody() -> None:
    delays = [retry_delay(_deadlock(), attempt) for attempt in range(1, DEADLOCK_ATTEMPTS)]
    assert delays == [0.05, 0.1, 0.2]
    spent = _deadlock()
    assert retry_delay(spent, DEADLOCK_ATTEMPTS) is None
    try:  # as the sync raises it: translated, from the driver's error
        raise translate(spent, what="upsert into internet table 'merchant'") from spent
    except TransientSyncError as exc:
        assert is_transient(exc) and retry_task(None, None, Failed(data=exc)) is False  # not 4 x 3


def test_a_deadlock_in_a_transaction_that_could_not_run_it_again_is_left_to_prefect() -> None:
    """A deadlock in a caller's transaction (held across zones) was never retried: Prefect runs the task again."""
    error = _deadlock()
    try:
        raise translate(error, what="recording the batch") from error
    except TransientSyncError as exc:
        assert retry_task(None, None, Failed(data=exc)) is True


@pytest.mark.parametrize(
    "error",
    [
        wrapped(sa_exc.OperationalError, psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")),
        wrapped(sa_exc.OperationalError, pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")),
        wrapped(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")),
        wrapped(sa_exc.IntegrityError, pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'")),
    ],
    ids=["pg-lock-timeout", "mysql-lock-timeout", "sqlite-busy", "duplicate"],
)
def test_a_wait_that_lasted_its_whole_limit_is_not_repeated_at_once(error: BaseException) -> None:
    assert retry_delay(error, 1) is None


def test_a_dead_connection_is_run_again_once_unless_the_server_went_silent() -> None:
    def dead(silent: bool = False) -> sa_exc.DBAPIError:
        driver = psycopg.OperationalError("server closed the connection unexpectedly")
        if silent:
            setattr(driver, NO_ANSWER, True)
        return wrapped(sa_exc.DBAPIError, driver, connection_invalidated=True)

    assert retry_delay(dead(), 1) == 0.0
    assert retry_delay(dead(), 2) is None
    assert retry_delay(dead(silent=True), 1) is None


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("Duplicate entry 'ana@x.io' for key 'ux_login_email'", "Duplicate entry '…' for key 'ux_login_email'"),
        ("Duplicate entry 'O'Brien-7' for key 'PRIMARY'", "Duplicate entry '…' for key 'PRIMARY'"),
        ("Incorrect decimal value: 'abc' for column `zs`.`merchant`.`fee` at row 1",
         "Incorrect decimal value: '…' for column `zs`.`merchant`.`fee` at row 1"),
        ('invalid input syntax for type numeric: "abc"', 'invalid input syntax for type numeric: "…"'),
        ('value "99999999999" is out of range for type integer', 'value "…" is out of range for type integer'),
        ('invalid byte sequence for encoding "UTF8": 0xe9 0x80', 'invalid byte sequence for encoding "UTF8": 0x…'),
        ('null value in column "fee" of relation "merchant" violates not-null constraint',
         'null value in column "fee" of relation "merchant" violates not-null constraint'),
        ('duplicate key value violates unique constraint "merchant_pkey"',
         'duplicate key value violates unique constraint "merchant_pkey"'),
        ("Data too long for column 'name' at row 1", "Data too long for column 'name' at row 1"),
        ("Table 'zs.merchant' doesn't exist", "Table 'zs.merchant' doesn't exist"),
        ("Can't connect to server on '10.0.0.5' (111)", "Can't connect to server on '10.0.0.5' (111)"),
    ],
    ids=["duplicate-entry", "value-with-a-quote", "incorrect-value", "invalid-input", "out-of-range", "bytes",
         "not-null", "unique", "too-long", "no-table", "connect"],
)  # fmt: skip
def test_a_database_message_keeps_the_names_it_quotes_and_hides_the_values(message: str, shown: str) -> None:
    assert hide_values(message) == shown


def test_a_driver_error_of_number_and_message_is_told_as_message_then_number() -> None:
    error = pymysql.err.IntegrityError(1062, "Duplicate entry 'ana@x.io' for key 'ux_login_email'")
    assert short_message(error) == "Duplicate entry '…' for key 'ux_login_email' (1062)"
