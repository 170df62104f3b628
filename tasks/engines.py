"""Database engines for the two zones. The only module that unwraps the secret URLs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from schemas.settings import Settings, Zone, get_settings
from tasks.errors import ConfigError, translate

_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
_SUPPORTED = ", ".join(sorted({"sqlite", "postgresql", "mysql", "mariadb"}))
_engines: dict[tuple[Zone, str], Engine] = {}
_lock = threading.Lock()
# A pooled connection used this recently is taken as alive (no ping round trip at checkout); if it died all the
# same, its first statement fails before any commit and `in_transaction` runs the work again on a new connection.
PING_AFTER_IDLE_SECONDS = 1.0
_LAST_USED = "zonesync_last_used"
T = TypeVar("T")


def parse_url(raw: str, *, setting: str) -> URL:
    """A SQLAlchemy URL with the driver zonesync uses; relative SQLite paths made absolute."""
    try:
        url = make_url(raw)
    except Exception:
        raise ConfigError(f"{setting} is not a valid database URL (expected e.g. postgresql://user@host/db)") from None
    backend = url.get_backend_name()
    if backend == "postgres":
        url = url.set(drivername="postgresql")
        backend = "postgresql"
    if backend not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ConfigError(f"{setting} uses unsupported database {backend!r} (supported: {_SUPPORTED})")
    if backend == "sqlite":
        return _absolute_sqlite(url, setting)
    if url.get_driver_name() in ("", backend, "psycopg2", "mysqldb", "mariadbconnector"):
        url = url.set(drivername=f"{backend}+{_DRIVERS[backend]}")
    return url


def _absolute_sqlite(url: URL, setting: str) -> URL:
    if not url.database or url.database == ":memory:":
        raise ConfigError(f"{setting}: an in-memory SQLite database cannot be shared; give a file path")
    path = Path(url.database).expanduser().resolve()
    return url.set(database=str(path))


def zone_setting(zone: Zone) -> str:
    """The environment variable that configures a zone."""
    return f"ZONESYNC_{zone.upper()}_URL"


def zone_url(zone: Zone, settings: Settings | None = None) -> URL:
    """The parsed URL of a zone (still holding its password: never print it, use `describe`)."""
    settings = settings or get_settings()
    return parse_url(settings.url_for(zone).get_secret_value(), setting=zone_setting(zone))


def describe(url_or_engine: URL | Engine) -> str:
    """A URL as it may appear in logs, errors and artifacts: password hidden."""
    url = url_or_engine.url if isinstance(url_or_engine, Engine) else url_or_engine
    return url.render_as_string(hide_password=True)


def get_engine(zone: Zone, settings: Settings | None = None) -> Engine:
    """The (cached) engine of a zone."""
    url = zone_url(zone, settings)
    cache_key = (zone, url.render_as_string(hide_password=False))
    with _lock:
        engine = _engines.get(cache_key)
        if engine is None:
            engine = create_engine(url)
            _engines[cache_key] = engine
    return engine


def create_engine(url: URL) -> Engine:
    """An engine configured the way every zonesync connection must be (UTC, strict, full Unicode)."""
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"pool_use_lifo": True}  # the warmest connection first; idle ones can time out
    if backend == "sqlite":
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif backend == "postgresql":
        kwargs["connect_args"] = {"options": "-c timezone=UTC", "connect_timeout": 10}
    else:
        kwargs["connect_args"] = {
            "local_infile": True,
            "charset": "utf8mb4",
            "connect_timeout": 10,
            "init_command": "SET time_zone = '+00:00', sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
        }
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping at checkout only the connections idle for more than PING_AFTER_IDLE_SECONDS."""

    def used(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever the ping's error, this connection is not to be used
            raise sa_exc.DisconnectionError("pooled connection failed its ping") from exc
        if not alive:
            raise sa_exc.DisconnectionError("pooled connection failed its ping")
        record.info[_LAST_USED] = time.monotonic()

    sa.event.listen(engine, "connect", used)
    sa.event.listen(engine, "checkin", used)
    sa.event.listen(engine, "checkout", checkout)


def in_transaction(bind: Engine | Connection, work: Callable[[Connection], T]) -> T:
    """Run `work(conn)` in one transaction, on a connection of the engine or on the one given.

    If the connection proves dead before the commit was sent (nothing of the transaction was kept), the work
    runs once more on a new connection; a failure at the commit itself is never run again (it may have committed).
    """
    for attempt in (1, 2):
        with _connected(bind) as conn:
            transaction = conn.begin()
            try:
                result = work(conn)
            except sa_exc.DBAPIError as exc:
                transaction.rollback()
                if attempt == 2 or not exc.connection_invalidated:
                    raise
                continue
            except BaseException:
                transaction.rollback()
                raise
            transaction.commit()
            return result
    raise AssertionError("unreachable")


class HeldConnections:
    """One pooled connection per engine for a unit of work (a push's batch), checked out when first needed, so
    that a zone that is down fails only the steps that use it (as a SyncError)."""

    def __init__(self, mapping: str) -> None:
        self.mapping = mapping
        self._held: dict[Engine, Connection] = {}

    def get(self, engine: Engine, zone: str) -> Connection:
        """The connection held for `engine`, checked out now if not yet."""
        if engine not in self._held:
            try:
                self._held[engine] = engine.connect()
            except Exception as exc:
                raise translate(exc, what=f"connecting to the {zone} zone", mapping=self.mapping) from exc
        return self._held[engine]

    def __enter__(self) -> HeldConnections:
        return self

    def __exit__(self, *_: object) -> None:
        for conn in self._held.values():
            conn.close()


@contextmanager
def _connected(bind: Engine | Connection) -> Iterator[Connection]:
    with bind.connect() if isinstance(bind, Engine) else nullcontext(bind) as conn:
        yield conn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the reader (connectorx) and the flag writer work on the same file at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def connectorx_url(engine: Engine) -> str:
    """The URL connectorx expects for an engine (no '+driver'; absolute SQLite path)."""
    url = engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite://{url.database}"
    scheme = "postgresql" if backend == "postgresql" else "mysql"
    plain = url.set(drivername=scheme)
    return plain.render_as_string(hide_password=False)


def dispose_engines() -> None:
    """Close every pooled connection (tests, and after a fork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
