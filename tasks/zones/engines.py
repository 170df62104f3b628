"""Database engines for the two zones. The only module that unwraps the secret URLs.

Every connection has bounded waits (ZONESYNC_CONNECT_TIMEOUT, _STATEMENT_TIMEOUT, _LOCK_TIMEOUT): the server
enforces the statement and lock limits itself where it can, and the client gives a connection up when the
server does not answer at all (a frozen server or a network that drops packets never sends an error).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext, make_url

from zonesync.schemas.errors import DIAGNOSIS, NO_ANSWER, ConfigError, TransientSyncError
from zonesync.schemas.settings import Settings, Zone, get_settings
from zonesync.tasks.dialects import database, supported_names
from zonesync.tasks.dialects.connecting import SilenceWatch
from zonesync.tasks.dialects.installing import Installing
from zonesync.tasks.dialects.limits import Limits
from zonesync.tasks.dialects.reconciling import Reconciling
from zonesync.tasks.dialects.surface import Database, Dialect
from zonesync.tasks.zones import breaker
from zonesync.tasks.zones.failures import diagnosis, translate
from zonesync.tasks.zones.profiles import HEALTH_SECONDS, EngineProfile, default_label, label_of, limits_of, profiles
from zonesync.tasks.zones.retrying import retry_delay

_engines: dict[tuple[Zone, str, Limits], Engine] = {}
_lock = threading.Lock()
# A pooled connection used this recently is taken as alive (no ping round trip at checkout); if it died all the
# same, its first statement fails before any commit and `in_transaction` runs the work again on a new connection.
PING_AFTER_IDLE_SECONDS = 1.0
_LAST_USED = "zonesync_last_used"
T = TypeVar("T")


def parse_url(raw: str, *, setting: str) -> URL:
    """A SQLAlchemy URL with the driver zonesync uses (relative SQLite paths made absolute), its parameters
    checked by its database's rules (`Connecting.normalize`)."""
    try:
        url = make_url(raw)
    except Exception:
        raise ConfigError(f"{setting} is not a valid database URL (expected e.g. postgresql://user@host/db)") from None
    found = database(url.get_backend_name())
    if found is None:
        supported = ", ".join(supported_names())
        raise ConfigError(f"{setting} uses unsupported database {url.get_backend_name()!r} (supported: {supported})")
    return found.connecting.normalize(url, setting)


def zone_setting(zone: Zone) -> str:
    """The environment variable that configures a zone."""
    return f"ZONESYNC_{zone.upper()}_URL"


def zone_url(zone: Zone, settings: Settings | None = None) -> URL:
    """The parsed URL of a zone (still holding its password: never print it, use `describe`)."""
    settings = settings or get_settings()
    return parse_url(settings.url_for(zone).get_secret_value(), setting=zone_setting(zone))


def require_zone_database(zone: Zone) -> None:
    """A ConfigError when the zone's database is a file that is not there: connecting would create an empty one
    (the default SQLite paths are relative to the working directory; only `init` and the demo create them)."""
    url = zone_url(zone)
    found = database(url.get_backend_name())
    missing = found.connecting.missing(url) if found else None
    if missing:
        raise ConfigError(
            f"{zone_setting(zone)}: no database at {missing}: run `zonesync init` where it should be (a relative "
            "path is relative to the working directory), or point the setting at the zone's database"
        )


def describe(url_or_engine: URL | Engine) -> str:
    """A URL as it may appear in logs, errors and artifacts: password hidden."""
    url = url_or_engine.url if isinstance(url_or_engine, Engine) else url_or_engine
    return url.render_as_string(hide_password=True)


def get_engine(zone: Zone, settings: Settings | None = None) -> Engine:
    """The (cached) engine of a zone."""
    settings = settings or get_settings()
    return _cached_engine(zone, settings, Limits.from_settings(settings))


def health_engine(zone: Zone, settings: Settings | None = None) -> Engine:
    """A separate (cached) engine of a zone for /health: it gives up after HEALTH_SECONDS, whatever the settings."""
    limits = Limits(HEALTH_SECONDS, HEALTH_SECONDS, HEALTH_SECONDS)
    # Its pool is not waited for either: checks still stuck on a silent zone must not queue the next ones.
    return _cached_engine(zone, settings or get_settings(), limits, pool_timeout=HEALTH_SECONDS)


# SQLAlchemy's pool: 5 kept, 10 more when needed; each further slice of a run (ZONESYNC_WORKERS) may hold about
# four at once (its claim, its delivery, the next batch's, its lease keeper).
POOL_OVERFLOW, CONNECTIONS_PER_SLICE = 10, 4


def _cached_engine(zone: Zone, settings: Settings, limits: Limits, pool_timeout: float = 30.0) -> Engine:
    url = zone_url(zone, settings)
    cache_key = (zone, url.render_as_string(hide_password=False), limits)
    with _lock:
        engine = _engines.get(cache_key)
        if engine is None:
            overflow = POOL_OVERFLOW + CONNECTIONS_PER_SLICE * (settings.workers - 1)  # slices share the engine
            engine = create_engine(url, zone=zone, limits=limits, pool_timeout=pool_timeout, max_overflow=overflow)
            _engines[cache_key] = engine
    return engine


def create_engine(
    url: URL,
    *,
    zone: str | None = None,
    limits: Limits | None = None,
    pool_timeout: float = 30.0,
    max_overflow: int = POOL_OVERFLOW,
) -> Engine:
    """An engine configured the way every zonesync connection must be (UTC, strict, full Unicode, bounded waits).

    `limits` defaults to the settings'; `zone` names the database in errors ("no answer from the internet zone");
    `pool_timeout` is how long a checkout waits for a free pooled connection (SQLAlchemy's default, 30 s).
    """
    limits = limits or Limits.from_settings()
    connecting = supported_database(url.get_backend_name()).connecting
    connecting.prepare(url)
    # The warmest connection first (idle ones can time out).
    kwargs: dict[str, Any] = {"pool_use_lifo": True, "pool_timeout": pool_timeout, "max_overflow": max_overflow}
    engine = sa.create_engine(url, connect_args=connecting.connect_args(url, limits), **kwargs)
    profiles[engine] = profile = EngineProfile(f"the {zone} zone" if zone else default_label(url), limits)
    watchdog = connecting.install(engine, limits)
    # Dialect and pool events only: a Connection event (before_cursor_execute, commit) would cost every
    # statement SQLAlchemy's event dispatch (measured: ~160 extra Python calls per 3-statement transaction).
    sa.event.listen(engine, "handle_error", _diagnose(profile, watchdog))
    _ping_when_idle(engine)
    return engine


def supported_database(name: str) -> Database:
    """The database a URL scheme or SQLAlchemy dialect name stands for; a ConfigError if zonesync has none."""
    found = database(name)
    if found is None:
        raise ConfigError(f"unsupported database {name!r} (supported: {', '.join(supported_names())})")
    return found


def dialect_for(engine: Engine) -> Dialect:
    """The engine's hot-path dialect, handed the limits the engine was created with and its database's label."""
    return supported_database(engine.dialect.name).dialect(engine, limits_of(engine), label_of(engine))


def installing_for(engine: Engine) -> Installing:
    """What `zonesync init` and `zonesync grants` install or advise on the engine's database."""
    return supported_database(engine.dialect.name).installing(dialect_for(engine))


def reconciling_for(engine: Engine) -> Reconciling:
    """The canonical-text and hash expressions of the engine's database, for the reconciliation."""
    return supported_database(engine.dialect.name).reconciling


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


def _diagnose(profile: EngineProfile, watchdog: SilenceWatch | None) -> Callable[[ExceptionContext], None]:
    """An engine's `handle_error` hook: a timeout or a silent server gets one clear line naming its limit."""

    def handle_error(context: ExceptionContext) -> None:
        original = context.original_exception
        connection = _dbapi_connection(context)
        if watchdog is not None and connection is not None and id(connection) in watchdog.cut:
            watchdog.cut.discard(id(connection))
            text = f"no answer from {profile.label} within {profile.limits.explain_deadline()}: connection given up"
            _mark(original, text, silent=True)
            context.is_disconnect = True
            return
        found = diagnosis(original, profile, connecting=context.connection is None)
        if found:
            _mark(original, *found)

    return handle_error


def _mark(original: BaseException, text: str, silent: bool) -> None:
    setattr(original, DIAGNOSIS, text)
    setattr(original, NO_ANSWER, silent)


def _dbapi_connection(context: ExceptionContext) -> Any:
    try:
        return context.connection.connection.dbapi_connection if context.connection is not None else None
    except Exception:  # an invalidated or closed connection has none
        return None


def in_transaction(bind: Engine | Connection, work: Callable[[Connection], T]) -> T:
    """Run `work(conn)` in one transaction, on a connection of the engine or on the one given: the one way
    zonesync opens a transaction (a claim, held across zones, and two-phase commit's prepared ones aside).

    On a connection already in a transaction, `work` runs in the caller's, which commits or rolls it back.
    Otherwise a failure before the commit is run again as `retrying.retry_delay` says (a dead connection, a
    lock conflict: nothing of the transaction was kept); a failure at the commit itself is never run again
    (it may have committed).
    """
    if isinstance(bind, Connection) and bind.in_transaction():
        return work(bind)
    for attempt in itertools.count(1):
        with _connected(bind) as conn:
            transaction = conn.begin()
            try:
                result = work(conn)
            except Exception as exc:
                transaction.rollback()
                delay = retry_delay(exc, attempt)
                if delay is None:
                    raise
            except BaseException:
                transaction.rollback()
                raise
            else:
                transaction.commit()
                return result
        time.sleep(delay)
    raise AssertionError("unreachable")


class HeldConnections:
    """One pooled connection per engine for a unit of work (a push's batch), checked out when first needed, so
    that a zone that is down fails only the steps that use it (as a SyncError)."""

    def __init__(self, mapping: str) -> None:
        self.mapping = mapping
        self._held: dict[Engine, Connection] = {}

    def get(self, engine: Engine, zone: str) -> Connection:
        """The connection held for `engine`, checked out now if not yet.

        A zone that failed to connect moments ago is not waited for again (`tasks.breaker`): the step fails at
        once as unavailable, and a probe in the background finds out when the zone is back.
        """
        if engine not in self._held:
            if not breaker.allow(engine, probe=lambda: engine.connect().close()):
                raise TransientSyncError(
                    f"connecting to the {zone} zone skipped: it failed moments ago (checked again in the background)",
                    mapping=self.mapping,
                )
            try:
                self._held[engine] = engine.connect()
            except Exception as exc:
                breaker.failed(engine)
                raise translate(exc, what=f"connecting to the {zone} zone", mapping=self.mapping) from exc
            breaker.succeeded(engine)
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


def dispose_engines() -> None:
    """Close every pooled connection (tests, and after a fork); forget which zones failed to connect."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    breaker.reset()
