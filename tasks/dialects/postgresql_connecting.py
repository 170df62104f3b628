"""How zonesync connects to PostgreSQL: psycopg with the server enforcing the statement and lock limits, the TLS
modes both readers (psycopg and connectorx) can honour, and a watchdog for a server that goes silent."""

from __future__ import annotations

import functools
import weakref
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from zonesync.schemas.errors import ConfigError
from zonesync.tasks.dialects.connecting import Connecting
from zonesync.tasks.dialects.limits import Limits, milliseconds, whole_seconds
from zonesync.tasks.dialects.postgresql_watchdog import Watchdog


class PostgresConnecting(Connecting):
    """psycopg with the server enforcing the statement and lock limits, and a watchdog for a silent server."""

    aliases = {"postgres": "postgresql"}
    driver = "psycopg"
    replaced_drivers = frozenset({"psycopg2"})
    # Passed on to psycopg and connectorx alike (both take these, measured with psycopg 3.3 and connectorx 0.4.6).
    url_parameters = frozenset(
        {
            "options", "application_name", "sslmode", "sslrootcert", "sslcert", "sslkey", "channel_binding",
            "target_session_attrs", "keepalives", "keepalives_idle", "keepalives_interval", "tcp_user_timeout",
            "host", "hostaddr",
        }
    )  # fmt: skip

    def check_query(self, url: URL, setting: str) -> None:
        """As the base, and the TLS modes both readers can honour (`CONNECTORX_SSLMODE`)."""
        super().check_query(url, setting)
        mode = url.query.get("sslmode")
        if mode == "verify-full":
            raise ConfigError(
                f"{setting}: sslmode=verify-full is not supported: connectorx, which reads the batches, cannot check "
                "the server's host name; use sslmode=verify-ca with sslrootcert=<the CA's file>"
            )
        if mode == "verify-ca" and not url.query.get("sslrootcert"):
            raise ConfigError(f"{setting}: sslmode=verify-ca needs sslrootcert=<the CA's file> (for connectorx too)")
        if isinstance(mode, str) and mode not in CONNECTORX_SSLMODE:
            raise ConfigError(f"{setting}: sslmode={mode!r} is not one of {', '.join(CONNECTORX_SSLMODE)}")

    def connect_args(self, url: URL, limits: Limits) -> dict[str, Any]:
        return {"connect_timeout": whole_seconds(limits.connect), "options": postgres_options(url, limits)}

    def install(self, engine: Engine, limits: Limits) -> Watchdog:
        """The watchdog gives up a connection whose server sends nothing within the deadline."""
        watchdog = Watchdog(limits.deadline)
        sa.event.listen(engine, "do_connect", watchdog.connect)
        sa.event.listen(engine, "connect", functools.partial(_note_encryption, weakref.ref(engine)))
        return watchdog

    def reader_url(self, engine: Engine, limits: Limits) -> str:
        """As `connectorx_url`; with an opportunistic TLS mode (libpq's `prefer`, the default, or `allow`),
        connectorx is told `disable` once the driver found that the server speaks plain text: the outcome
        `prefer` would reach anyway, without the TLS connector connectorx builds for each read, which loads
        the system's CA certificates every time (connectorx 0.4.6: a `SELECT 1` cost 16.5 ms of CPU, 1.4 ms
        with `disable`). A server that offers TLS later is seen by the driver's next new connection.
        """
        if engine.url.query.get("sslmode") in _OPPORTUNISTIC and _ENCRYPTED.get(engine) is False:
            return self.connectorx_url(engine.url.update_query_dict({"sslmode": "disable"}), limits)
        return self.connectorx_url(engine.url, limits)

    def connectorx_url(self, url: URL, limits: Limits) -> str:
        """The same `options` as the driver (timeouts, the URL's own options, UTC) and the connect timeout."""
        query = {name: value for name, value in url.query.items() if name != "options" and isinstance(value, str)}
        query |= {"options": postgres_options(url, limits), "connect_timeout": str(whole_seconds(limits.connect))}
        if "sslmode" in query:
            query["sslmode"] = CONNECTORX_SSLMODE[query["sslmode"]]
        plain = url.set(drivername="postgresql", query={})
        # Percent-encoded, a space as %20: connectorx does not decode '+' (it read "-c+lock_timeout" as a name).
        return f"{plain.render_as_string(hide_password=False)}?{urlencode(query, quote_via=quote)}"


# Whether the driver's latest new connection to each engine's server is encrypted (absent: none made yet).
_ENCRYPTED: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()
# libpq's TLS modes that encrypt only when the server offers it, and check nothing (None: the URL names none).
_OPPORTUNISTIC = frozenset({None, "allow", "prefer"})


def _note_encryption(engine: weakref.ref[Engine], dbapi_connection: Any, _record: Any) -> None:
    """The engine's `connect` hook: what TLS mode psycopg's negotiation ended in."""
    if (alive := engine()) is not None:
        _ENCRYPTED[alive] = bool(dbapi_connection.pgconn.ssl_in_use)


# libpq's TLS modes and what connectorx 0.4.6 (which knows disable, prefer and require only) is given for each,
# measured against a TLS-only server: `require` with `sslrootcert` verifies the certificate against that CA, as
# libpq's `verify-ca` does (and as libpq's own `require` does when a root certificate is given); neither
# checks the host name, which only libpq's `verify-full` does (refused: connectorx cannot).
CONNECTORX_SSLMODE = {"disable": "disable", "allow": "prefer", "prefer": "prefer", "require": "require",
                      "verify-ca": "require"}  # fmt: skip


def postgres_options(url: URL, limits: Limits) -> str:
    """The libpq `options` of a connection: zonesync's timeouts and plans, then the URL's own `options`, then UTC.

    The URL's options come after zonesync's (a zone may tune its own) and before the time zone (every
    connection runs in UTC). Passed as a connect argument, `options` would otherwise replace the URL's.

    Custom plans only: a pooled connection outlives many batches, psycopg prepares a statement on its fifth run,
    and PostgreSQL may then keep a plan made when a table was empty (the probe of a thin batch's keys then
    compared every target row with every key: 614 ms at 100,000 rows and 1,000 keys, 8 ms planned afresh).
    Planning each run costs 0.05-0.2 ms (measured: the probe, a claim's UPDATE, an upsert); the statements that
    read a batch's temporary table are planned anew for each batch anyway.
    """
    theirs = url.query.get("options")
    ours = (
        f"-c statement_timeout={milliseconds(limits.statement)} -c lock_timeout={milliseconds(limits.lock)} "
        "-c plan_cache_mode=force_custom_plan"
    )
    return " ".join(part for part in (ours, theirs if isinstance(theirs, str) else "", "-c timezone=UTC") if part)
