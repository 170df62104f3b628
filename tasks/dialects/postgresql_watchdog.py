"""The PostgreSQL watchdog: a connection whose server has not answered within its limit is given up.

The server's statement_timeout cannot fire when the server is frozen or the network drops packets, and TCP
keepalives do not notice a stopped server (its kernel still acknowledges): only the client can notice.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from typing import Any

import psycopg
from psycopg import pq

# How often the PostgreSQL watchdog looks for operations past their limit (its precision; it costs nothing else).
WATCHDOG_TICK_SECONDS = 0.25


class Watchdog:
    """Gives up the PostgreSQL operations of an engine that get no answer within `limit` seconds.

    The server's statement_timeout cannot fire when the server is frozen or the network drops packets, and TCP
    keepalives do not notice a stopped server (its kernel still acknowledges). So the engine's connections note
    when each operation starts (`_WatchedConnection`: one attribute store), and the shared sweeper thread shuts
    down the socket of a connection whose latest operation is still in progress (libpq says so) past the
    limit: psycopg raises, SQLAlchemy drops the connection, and `_diagnose` says "no answer from ... within ...".
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.connections: weakref.WeakSet[_WatchedConnection] = weakref.WeakSet()
        self.cut: set[int] = set()  # ids of the connections given up, until their error is diagnosed
        self._lock = threading.Lock()  # a WeakSet must not change while the sweeper copies it
        with _sweeper_lock:
            _watchdogs.add(self)
        _start_sweeper()

    def connect(self, _dialect: Any, _record: Any, cargs: Any, cparams: Any) -> _WatchedConnection:
        """The engine's `do_connect` hook: psycopg's connection, watched."""
        connection = _WatchedConnection.connect(*cargs, cursor_factory=_WatchedCursor, **cparams)
        with self._lock:
            self.connections.add(connection)
        return connection

    def sweep(self, now: float) -> None:
        """Shut down the connections whose latest operation has waited past the limit."""
        with self._lock:
            connections = list(self.connections)
        for connection in connections:
            started = connection.zonesync_started
            overdue = started is not None and now - started > self.limit
            # Still running (libpq says so), and still the same operation (not a new one begun meanwhile).
            if overdue and _in_progress(connection) and connection.zonesync_started == started:
                connection.zonesync_started = None
                self.cut.add(id(connection))
                _shut_down(connection)


class _WatchedConnection(psycopg.Connection[Any]):
    """psycopg's connection, noting when each operation that waits on the server starts (for `Watchdog`)."""

    zonesync_started: float | None = None  # monotonic time; stays set after the operation (libpq says if it runs)

    def commit(self) -> None:
        self.zonesync_started = time.monotonic()
        super().commit()

    def rollback(self) -> None:  # also the pool's reset when a connection comes back
        self.zonesync_started = time.monotonic()
        super().rollback()

    def tpc_prepare(self) -> None:
        self.zonesync_started = time.monotonic()
        super().tpc_prepare()

    def tpc_commit(self, xid: Any = None) -> None:
        self.zonesync_started = time.monotonic()
        super().tpc_commit(xid)

    def tpc_rollback(self, xid: Any = None) -> None:
        self.zonesync_started = time.monotonic()
        super().tpc_rollback(xid)


class _WatchedCursor(psycopg.Cursor[Any]):
    """psycopg's cursor, noting on its connection when each statement starts (one attribute store)."""

    __slots__ = ()

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        self._conn.zonesync_started = time.monotonic()  # type: ignore[attr-defined]
        return super().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> None:
        self._conn.zonesync_started = time.monotonic()  # type: ignore[attr-defined]
        super().executemany(*args, **kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:  # COPY ... FROM STDIN: the whole load is one operation
        self._conn.zonesync_started = time.monotonic()  # type: ignore[attr-defined]
        return super().copy(*args, **kwargs)


def _in_progress(connection: Any) -> bool:
    return bool(connection.pgconn.transaction_status == pq.TransactionStatus.ACTIVE)  # a command awaits its answer


def _shut_down(connection: Any) -> None:
    """Shut the socket down under libpq's feet (a duplicate descriptor: psycopg keeps and closes its own)."""
    try:
        with socket.fromfd(connection.pgconn.socket, socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass  # closed meanwhile: there is nothing left to give up


_watchdogs: weakref.WeakSet[Watchdog] = weakref.WeakSet()
_sweeper: threading.Thread | None = None
_sweeper_lock = threading.Lock()  # not `_lock`: engines are created (and the sweeper started) while it is held


def _start_sweeper() -> None:
    """One daemon thread per process (started again in a forked child, where it does not survive)."""
    global _sweeper
    with _sweeper_lock:
        if _sweeper is None or not _sweeper.is_alive():
            _sweeper = threading.Thread(target=_sweep_forever, name="zonesync-watchdog", daemon=True)
            _sweeper.start()


def _sweep_forever() -> None:
    while True:
        time.sleep(WATCHDOG_TICK_SECONDS)
        now = time.monotonic()
        with _sweeper_lock:
            watchdogs = list(_watchdogs)
        for watchdog in watchdogs:
            try:
                watchdog.sweep(now)
            except Exception:  # a connection closing under our feet must not stop the watch over all the others
                continue
