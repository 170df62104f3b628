"""Bounded waits (ZONESYNC_CONNECT_TIMEOUT, _STATEMENT_TIMEOUT, _LOCK_TIMEOUT): what each driver is given so that
the server enforces the statement and lock limits itself, and the clear line an error about a limit becomes.

The client gives a PostgreSQL connection up when the server does not answer at all (`tasks.watchdog`); PyMySQL
does it with its socket timeouts; connectorx reads are waited for with a deadline (`tasks.cxread`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql
from sqlalchemy.engine import URL, Engine

from zonesync.schemas.settings import Settings, get_settings

# The client waits this much longer than the server's own statement limit: the server's timeout normally
# answers first (one clear error, the connection kept); the client gives up only when nothing arrives at all.
STATEMENT_GRACE_SECONDS = 2.0
# /health: each zone gets this long (connect and query) so that the answer comes within ~2 s whatever happens.
HEALTH_SECONDS = 1.5


@dataclass(frozen=True)
class Limits:
    """How long connecting, one statement and one lock wait may take, in seconds."""

    connect: float
    statement: float
    lock: float

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Limits:
        """The limits of ZONESYNC_CONNECT_TIMEOUT, ZONESYNC_STATEMENT_TIMEOUT and ZONESYNC_LOCK_TIMEOUT."""
        settings = settings or get_settings()
        return cls(settings.connect_timeout, settings.statement_timeout, settings.lock_timeout)

    @property
    def deadline(self) -> float:
        """How long the client waits for any answer during a statement before it gives the connection up."""
        return self.statement + STATEMENT_GRACE_SECONDS

    def explain_deadline(self) -> str:
        """The deadline as the settings that make it, for error messages."""
        return f"ZONESYNC_STATEMENT_TIMEOUT={self.statement:g}s + {STATEMENT_GRACE_SECONDS:g}s"


@dataclass(frozen=True)
class EngineProfile:
    """What an engine's bounded waits are, and how its errors name the database (never with the URL)."""

    label: str
    limits: Limits


profiles: weakref.WeakKeyDictionary[Engine, EngineProfile] = weakref.WeakKeyDictionary()


def limits_of(engine: Engine) -> Limits:
    """The limits an engine was created with (the settings' for an engine zonesync did not create)."""
    profile = profiles.get(engine)
    return profile.limits if profile else Limits.from_settings()


def label_of(engine: Engine) -> str:
    """'the internet zone', or for an engine made without a zone 'the postgresql database at host:port'."""
    profile = profiles.get(engine)
    return profile.label if profile else default_label(engine.url)


def default_label(url: URL) -> str:
    where = f" at {url.host}:{url.port}" if url.host and url.port else f" at {url.host}" if url.host else ""
    return f"the {url.get_backend_name()} database{where}"


def connect_args(url: URL, limits: Limits) -> dict[str, Any]:
    """The driver arguments that bound every wait of a connection (and keep it in UTC, strict, utf8mb4)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"timeout": limits.lock, "check_same_thread": False}  # the busy timeout: how long a lock is awaited
    if backend == "postgresql":
        return {"connect_timeout": whole_seconds(limits.connect), "options": postgres_options(url, limits)}
    return {
        "local_infile": True,
        "charset": "utf8mb4",
        "connect_timeout": limits.connect,
        # PyMySQL's socket timeouts: no answer to a read or a write for this long and the connection is given up.
        "read_timeout": limits.deadline,
        "write_timeout": limits.deadline,
        "init_command": mariadb_init_command(limits),
    }


def postgres_options(url: URL, limits: Limits) -> str:
    """The libpq `options` of a connection: zonesync's timeouts, then the URL's own `options`, then UTC.

    The URL's options come after the timeouts (a zone may tune its own) and before the time zone (every
    connection runs in UTC). Passed as a connect argument, `options` would otherwise replace the URL's.
    """
    theirs = url.query.get("options")
    ours = f"-c statement_timeout={milliseconds(limits.statement)} -c lock_timeout={milliseconds(limits.lock)}"
    return " ".join(part for part in (ours, theirs if isinstance(theirs, str) else "", "-c timezone=UTC") if part)


def mariadb_init_command(limits: Limits) -> str:
    """The session settings of a MariaDB/MySQL connection (one statement: PyMySQL sends only one).

    Lock waits take whole seconds (at least 1). `max_statement_time` is MariaDB's: it sits in a MariaDB-only
    executable comment, which MySQL reads as a plain comment (MySQL is then bounded by the read timeout only).
    """
    lock = whole_seconds(limits.lock)
    return (
        "SET time_zone = '+00:00', sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), "
        f"innodb_lock_wait_timeout = {lock}, lock_wait_timeout = {lock}"
        f" /*M!100108 , max_statement_time = {limits.statement:.3f} */"
    )


def milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class BoundedPyMySQL(pymysql.connections.Connection):
    """PyMySQL reads the server's greeting with the *read* timeout: a server that accepts the connection and
    never answers would hold it for the statement limit. Connecting uses the connect timeout instead."""

    _read_timeout: float | None  # PyMySQL's own (untyped) attributes
    _write_timeout: float | None
    connect_timeout: float | None

    def connect(self, sock: Any = None) -> None:
        read, write = self._read_timeout, self._write_timeout
        self._read_timeout = self._write_timeout = self.connect_timeout
        try:
            super().connect(sock)
        finally:  # the next read or write sets the socket's timeout back (PyMySQL compares it before each)
            self._read_timeout, self._write_timeout = read, write


def bounded_pymysql_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    return BoundedPyMySQL(*cargs, **cparams)


def sqlite_pragmas(limits: Limits) -> Callable[[Any, Any], None]:
    busy = milliseconds(limits.lock)

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets the reader and the flag writer work on the same file at once; the busy timeout is how long a
        # lock another connection holds is awaited (ZONESYNC_LOCK_TIMEOUT), then "database is locked".
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy}")
        cursor.close()

    return pragmas


def diagnosis(original: BaseException, profile: EngineProfile, *, connecting: bool) -> tuple[str, bool] | None:
    """The clear line for a driver error that is about a limit, and whether the server went silent; else None."""
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    number = args[0] if args and isinstance(args[0], int) else None
    # PyMySQL's errors are (number, message): the message alone reads better.
    text = args[1] if number is not None and len(args) > 1 and isinstance(args[1], str) else str(original)
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else type(original).__name__
    lowered = first.lower()
    state = getattr(original, "sqlstate", None)
    limits = profile.limits
    if connecting and ("timeout expired" in lowered or "timed out" in lowered):
        return f"no answer from {profile.label} within ZONESYNC_CONNECT_TIMEOUT={limits.connect:g}s", True
    if number == 2013 and "timed out" in lowered:  # PyMySQL's read timeout
        return f"no answer from {profile.label} within {limits.explain_deadline()}: connection given up", True
    if (state == "57014" and "statement timeout" in lowered) or number == 1969:
        return f"{first} (ZONESYNC_STATEMENT_TIMEOUT={limits.statement:g}s)", False
    if (state == "55P03" and "lock timeout" in lowered) or number == 1205 or "database is locked" in lowered:
        return f"{first} (ZONESYNC_LOCK_TIMEOUT={limits.lock:g}s)", False
    return None
