"""How zonesync connects to MariaDB (and MySQL 8): PyMySQL with the session limits set at connect, socket timeouts
for a silent server, LOAD DATA allowed, and the TLS modes PyMySQL and connectorx both honour."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote, urlencode

import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from zonesync.schemas.errors import ConfigError
from zonesync.tasks.dialects.connecting import Connecting
from zonesync.tasks.dialects.limits import Limits, milliseconds, whole_seconds

# TLS as the MySQL client names it (--ssl-mode, --ssl-ca), for PyMySQL and connectorx alike. Measured against a
# private MariaDB: both encrypt with `required`; with `verify_ca` both refuse a certificate from another CA; with
# `verify_identity` both also refuse one made for another host; with `disabled` neither encrypts. Without
# `ssl_mode` each keeps its default: PyMySQL encrypts when the server offers TLS, connectorx does not (its
# PREFERRED insists on TLS, so it is not offered). connectorx presents no client certificate.
SSL_MODES = ("disabled", "required", "verify_ca", "verify_identity")


def ssl_mode(url: URL) -> str | None:
    """The URL's TLS mode; with only `ssl_ca` given, `verify_ca` (as the MySQL client does); None: not set."""
    mode = url.query.get("ssl_mode")
    return mode if isinstance(mode, str) else "verify_ca" if url.query.get("ssl_ca") else None


def pymysql_tls(url: URL) -> dict[str, Any]:
    """PyMySQL's TLS arguments for the URL's mode (they replace what SQLAlchemy makes of `ssl_ca`)."""
    mode = ssl_mode(url)
    if mode is None:
        return {"ssl": None}
    if mode == "disabled":
        return {"ssl": None, "ssl_disabled": True}
    if mode == "required":  # encrypted, the certificate not checked (PyMySQL has no flag for that alone)
        unchecked = ssl.create_default_context()
        unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
        return {"ssl": unchecked}
    return {"ssl": None, "ssl_ca": url.query["ssl_ca"], "ssl_verify_cert": True,
            "ssl_verify_identity": mode == "verify_identity"}  # fmt: skip


class MariaDBConnecting(Connecting):
    """PyMySQL with session limits set at connect, socket timeouts for a silent server, and LOAD DATA allowed."""

    driver = "pymysql"
    replaced_drivers = frozenset({"mysqldb", "mariadbconnector"})
    url_parameters = frozenset({"ssl_mode", "ssl_ca"})

    def check_query(self, url: URL, setting: str) -> None:
        """As the base, and a TLS mode both readers know, with the CA file it needs."""
        super().check_query(url, setting)
        mode = ssl_mode(url)
        if mode is not None and mode not in SSL_MODES:
            raise ConfigError(f"{setting}: ssl_mode={mode!r} is not one of {', '.join(SSL_MODES)}")
        if mode in ("verify_ca", "verify_identity") and not url.query.get("ssl_ca"):
            raise ConfigError(f"{setting}: ssl_mode={mode} needs ssl_ca=<the CA's file>")

    def connect_args(self, url: URL, limits: Limits) -> dict[str, Any]:
        return {
            **pymysql_tls(url),
            "local_infile": True,
            "charset": "utf8mb4",
            "connect_timeout": limits.connect,
            # PyMySQL's socket timeouts: no answer to a read or a write for this long and the connection is given up.
            "read_timeout": limits.deadline,
            "write_timeout": limits.deadline,
            "init_command": mariadb_init_command(limits),
        }

    def install(self, engine: Engine, limits: Limits) -> None:
        sa.event.listen(engine, "do_connect", _bounded_connect)

    def connectorx_url(self, url: URL, limits: Limits) -> str:
        """The connect timeout (the session limits come with the query: `connectorx_query`).

        prefer_socket=false: connectorx's MySQL driver otherwise switches a 127.0.0.1 URL to the local server's
        Unix socket — past a tunnel or proxy on that port, to another server than the URL names.
        """
        plain = url.set(drivername="mysql", query={}).render_as_string(hide_password=False)
        query = {"tcp_connect_timeout_ms": str(milliseconds(limits.connect)), "prefer_socket": "false"}
        mode = ssl_mode(url)
        if mode is not None:
            query["ssl-mode"] = mode.upper()
        if mode in ("verify_ca", "verify_identity"):
            query["ssl-ca"] = str(url.query["ssl_ca"])
        return f"{plain}?{urlencode(query, safe='/', quote_via=quote)}"

    def connectorx_query(self, sql: str, limits: Limits) -> str:
        """`sql` with the session settings of `mariadb_init_command`, in a MariaDB-only executable comment as there.

        UTC included: connectorx's connections keep the server's `time_zone`, in which a TIMESTAMP column is read
        (measured: with `default-time-zone=+07:00`, every instant came back 7 hours late).
        """
        lock = whole_seconds(limits.lock)
        settings = (
            f"time_zone='+00:00', max_statement_time={limits.statement:.3f}, innodb_lock_wait_timeout={lock}, "
            f"lock_wait_timeout={lock}"
        )
        return f"/*M!100301 SET STATEMENT {settings} FOR */ {sql}"


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


def _bounded_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    cparams.pop("ssl_mode", None)  # zonesync's URL parameter (`connect_args` gave PyMySQL its own)
    return BoundedPyMySQL(*cargs, **cparams)
