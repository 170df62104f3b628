"""connectorx reads with the engines' bounded waits: the limits travel in the URL (PostgreSQL) or with the query
(MariaDB), and every read is waited for with a deadline, since connectorx cannot be interrupted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from sqlalchemy.engine import Engine

from zonesync.schemas.errors import NoAnswer
from zonesync.tasks.limits import (
    STATEMENT_GRACE_SECONDS,
    label_of,
    limits_of,
    milliseconds,
    postgres_options,
    whole_seconds,
)

T = TypeVar("T")


def connectorx_url(engine: Engine) -> str:
    """The URL connectorx expects for an engine (no '+driver'; absolute SQLite path), with the engine's limits.

    PostgreSQL gets the same `options` as the driver (timeouts, the URL's own options, UTC) and the connect
    timeout; MariaDB/MySQL the connect timeout (its session limits come with the query: `connectorx_query`).
    """
    url = engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite://{url.database}"
    limits = limits_of(engine)
    if backend == "postgresql":
        query = {name: value for name, value in url.query.items() if name != "options" and isinstance(value, str)}
        query |= {"options": postgres_options(url, limits), "connect_timeout": str(whole_seconds(limits.connect))}
    else:
        # prefer_socket=false: connectorx's MySQL driver otherwise switches a 127.0.0.1 URL to the local server's
        # Unix socket — past a tunnel or proxy on that port, to another server than the URL names.
        query = {"tcp_connect_timeout_ms": str(milliseconds(limits.connect)), "prefer_socket": "false"}
    plain = url.set(drivername="postgresql" if backend == "postgresql" else "mysql", query={})
    # Percent-encoded, a space as %20: connectorx does not decode '+' (it read "-c+lock_timeout" as a name).
    return f"{plain.render_as_string(hide_password=False)}?{urlencode(query, quote_via=quote)}"


def connectorx_query(engine: Engine, sql: str) -> str:
    """The SQL connectorx runs for `sql`: on MariaDB with the session limits of `mariadb_init_command`
    (connectorx runs no init command), in a MariaDB-only executable comment as there."""
    if engine.url.get_backend_name() not in ("mysql", "mariadb"):
        return sql
    limits = limits_of(engine)
    lock = whole_seconds(limits.lock)
    limit_clause = (
        f"max_statement_time={limits.statement:.3f}, innodb_lock_wait_timeout={lock}, lock_wait_timeout={lock}"
    )
    return f"/*M!100301 SET STATEMENT {limit_clause} FOR */ {sql}"


def read_within_deadline(engine: Engine, read: Callable[[], T]) -> T:
    """Run a connectorx read of `engine`'s database, waiting for it at most the connect and statement limits
    plus the grace; then a NoAnswer error (transient) says which zone did not answer.

    connectorx cannot be interrupted, so the read runs in a daemon thread and is left behind if it never returns
    (holding its connection until the process ends). A daemon thread never holds up the interpreter's exit,
    where a ThreadPoolExecutor's worker would: those are joined at exit.
    """
    limits = limits_of(engine)
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, read()))
        except BaseException as exc:  # handed to the caller's thread, raised there
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="zonesync-read", daemon=True).start()
    if not done.wait(limits.connect + limits.deadline):
        raise NoAnswer(
            f"reading from {label_of(engine)} took longer than ZONESYNC_STATEMENT_TIMEOUT={limits.statement:g}s "
            f"(+ {STATEMENT_GRACE_SECONDS:g}s, + ZONESYNC_CONNECT_TIMEOUT={limits.connect:g}s to connect): no answer"
        )
    succeeded, value = outcome[0]
    if succeeded:
        return value
    raise value
