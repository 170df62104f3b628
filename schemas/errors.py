"""One error hierarchy for zonesync: transient errors are retried, terminal ones are reported.

Driver exceptions are translated at the boundary with `raise translate(...) from exc`; the translated
message never contains a connection URL or password.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy.exc as sa_exc


class SyncError(Exception):
    """Base of every error zonesync raises on purpose."""

    transient = False

    def __init__(
        self, message: str, *, mapping: str | None = None, keys: Sequence[Any] = (), public: str | None = None
    ) -> None:
        super().__init__(message)
        self.mapping = mapping
        self.keys = tuple(keys)
        self.public = public  # what a caller is told instead, when the message quotes a database

    def __str__(self) -> str:
        return self._in_mapping(super().__str__())

    @property
    def for_caller(self) -> str:
        """The message for whoever sent the request (an HTTP client, a result object): zonesync's own words,
        never a database's text (constraint names, hosts); the log has that."""
        return self._in_mapping(self.public) if self.public else str(self)

    def _in_mapping(self, message: str) -> str:
        return f"mapping '{self.mapping}': {message}" if self.mapping else message


class TransientSyncError(SyncError):
    """Connection lost, deadlock, lock timeout: running again may succeed."""

    transient = True


class TerminalSyncError(SyncError):
    """Validation, mapping, constraint or configuration problems: running again will not help."""


class ConfigError(TerminalSyncError):
    """A user mistake in settings or arguments (bad URL, unknown mapping, missing table)."""


class MappingError(ConfigError):
    """A `SyncMapping` declaration that cannot work."""


class RefusedValue(TerminalSyncError):
    """A bulk load refused a value of some row (truncation, bad value): splitting the batch isolates it."""


class KeyCollision(RefusedValue):
    """The target's collation calls a row's key equal to another key (MariaDB pads trailing blanks and mostly
    folds case): writing it would overwrite that other row."""

    reason = "duplicate_key"


class NoAnswer(TransientSyncError):
    """A zone did not answer within its limits (a frozen server, a network that drops packets)."""


# A driver exception about a limit (a timeout, a silent server) carries its clear line in this attribute, set
# by the engine that knows the limit (tasks/engines.py); `short_message` prefers it to the driver's text.
DIAGNOSIS = "zonesync_diagnosis"


_URL_PATTERN = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)
_PASSWORD_PATTERN = re.compile(r"(password\s*[=:]\s*)(\S+)", re.IGNORECASE)

# SQLSTATE classes and MySQL error numbers that mean "try again".
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300")
_TRANSIENT_MYSQL_CODES = {1205, 1213, 2002, 2003, 2006, 2013, 1040, 1053}


def scrub(text: str) -> str:
    """Remove anything that looks like a connection URL or a password from a message."""
    text = _URL_PATTERN.sub("<url hidden>", text)
    return _PASSWORD_PATTERN.sub(r"\1***", text)


def short_message(exc: BaseException) -> str:
    """The first line of a driver error, scrubbed, without SQLAlchemy's background links."""
    original = getattr(exc, "orig", None) or exc
    lines = [line for line in str(original).strip().splitlines() if line.strip()]
    first = getattr(original, DIAGNOSIS, None) or (lines[0] if lines else type(original).__name__)
    return scrub(first)[:500]


def is_transient(exc: BaseException) -> bool:
    """Whether a (driver or zonesync) error is worth retrying."""
    if isinstance(exc, SyncError):
        return exc.transient
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or (isinstance(exc, sa_exc.OperationalError) and _is_disconnect(exc)):
            return True
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(state, str) and state.startswith(_TRANSIENT_SQLSTATES):
            return True
        args = getattr(exc.orig, "args", ())
        if args and isinstance(args[0], int) and args[0] in _TRANSIENT_MYSQL_CODES:
            return True
        return "database is locked" in str(exc.orig)
    return isinstance(exc, ConnectionError | TimeoutError)


_DISCONNECT_WORDS = (
    "connection refused", "could not connect", "server closed", "lost connection", "timeout expired", "timed out",
    "unable to open database file",  # SQLite: the file's directory is gone (an unmounted volume)
)  # fmt: skip


_LOCK_CONFLICT_SQLSTATES = ("40001", "40P01", "55P03")  # serialization failure, deadlock, lock not available
_LOCK_CONFLICT_MYSQL_CODES = {1205, 1213}  # lock wait timeout, deadlock


def is_lock_conflict(exc: BaseException) -> bool:
    """A deadlock or lock timeout: the transaction was rolled back whole and may simply run again."""
    original = getattr(exc, "orig", exc)
    args: tuple[object, ...] = tuple(getattr(original, "args", ()))
    return (
        getattr(original, "sqlstate", None) in _LOCK_CONFLICT_SQLSTATES
        or (len(args) > 0 and args[0] in _LOCK_CONFLICT_MYSQL_CODES)
        or "database is locked" in str(original)
    )


def _is_disconnect(exc: sa_exc.DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in _DISCONNECT_WORDS)


# Why a database refused a row: SQLSTATE (PostgreSQL), error number (MariaDB/MySQL), message (SQLite).
_REFUSALS = (
    ("duplicate_key", {"23505"}, {1062, 1022}, "UNIQUE constraint failed"),
    ("missing_required", {"23502"}, {1048, 1364}, "NOT NULL constraint failed"),
    ("invalid_value", {"23514", "22001", "22003", "22007", "22008", "22P02"}, {1406, 1264, 1292, 1366, 3819, 4025},
     "CHECK constraint failed"),
)  # fmt: skip


def refusal_reason(exc: BaseException) -> str:
    """A short code for why a write was refused: duplicate_key, missing_required, invalid_value, unavailable."""
    cause = exc.__cause__ if isinstance(exc, SyncError) and exc.__cause__ else exc
    if is_transient(cause):
        return "unavailable"
    original = getattr(cause, "orig", cause)
    state = getattr(original, "sqlstate", None)
    args = getattr(original, "args", ())
    number = args[0] if args and isinstance(args[0], int) else None
    for reason, states, numbers, sqlite_text in _REFUSALS:
        if state in states or number in numbers or sqlite_text in str(original):
            return reason
    return "database_error"


# A database's refusal as a caller is told it (by `refusal_reason`).
_REFUSAL_WORDS = {
    "duplicate_key": "refused: a row with this key, or with this value of a unique column, exists already",
    "missing_required": "refused: a column that needs a value has none",
    "invalid_value": "refused: a value does not fit its column",
    "unavailable": "failed: the database is unavailable or did not answer in time",
    "database_error": "failed: the database refused it (the zonesync log has its message)",
}


def translate(exc: BaseException, *, what: str, mapping: str | None = None) -> SyncError:
    """Turn a driver exception into a SyncError saying what was being done; secrets removed. Its `for_caller`
    says why in zonesync's words, with the reason code."""
    if isinstance(exc, SyncError):
        return exc
    message = f"{what} failed: {short_message(exc)}"
    reason = refusal_reason(exc)
    public = f"{what} {_REFUSAL_WORDS[reason]} ({reason})"
    if is_transient(exc):
        return TransientSyncError(message, mapping=mapping, public=public)
    return TerminalSyncError(message, mapping=mapping, public=public)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a task only when it failed with a transient error."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False
