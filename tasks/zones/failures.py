"""What an exception means for zonesync: worth running again, a lock conflict, why a row was refused, which limit
was reached. The driver that raised it says so (its dialect's `DriverErrors`); this module turns the answer into
zonesync's errors (`translate`), whose messages never contain a connection URL or password."""

from __future__ import annotations

import sqlalchemy.exc as sa_exc

from zonesync.schemas.errors import SyncError, TerminalSyncError, TransientSyncError, short_message
from zonesync.tasks.dialects import driver_errors_for
from zonesync.tasks.dialects.driver_errors import NOWHERE, RefusedAt
from zonesync.tasks.zones.profiles import EngineProfile

# PEP 249 names: SQLAlchemy's wrappers and every driver's own exceptions (raised by COPY / LOAD DATA) use them.
_ROW_LEVEL_ERROR_NAMES = ("IntegrityError", "DataError")


def _original(exc: BaseException) -> BaseException:
    """The driver's exception inside SQLAlchemy's wrapper (or the exception itself)."""
    original = getattr(exc, "orig", None)
    return original if isinstance(original, BaseException) else exc


def is_transient(exc: BaseException) -> bool:
    """Whether a (driver or zonesync) error is worth retrying."""
    if isinstance(exc, SyncError):
        return exc.transient
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        errors = driver_errors_for(_original(exc))
        if errors is None:
            return False
        disconnected = isinstance(exc, sa_exc.OperationalError) and errors.is_disconnect(_original(exc))
        return disconnected or errors.is_transient(_original(exc))
    return isinstance(exc, ConnectionError | TimeoutError)


def is_lock_conflict(exc: BaseException) -> bool:
    """A deadlock or a lock timeout: worth running again (`is_transient` says so too)."""
    errors = driver_errors_for(_original(exc))
    return errors is not None and (errors.is_deadlock(_original(exc)) or errors.is_lock_timeout(_original(exc)))


def is_deadlock(exc: BaseException) -> bool:
    """The database chose the transaction as a deadlock's victim: rolled back whole, it may run again at once."""
    errors = driver_errors_for(_original(exc))
    return errors is not None and errors.is_deadlock(_original(exc))


def row_error_kind(exc: BaseException) -> str | None:
    """'IntegrityError' or 'DataError' when the error (or the driver error it wraps) refuses some row's values."""
    original = _original(exc)
    errors = driver_errors_for(original)
    if errors is not None and errors.is_row_level(original):
        return "IntegrityError"
    for error in (exc, original):
        for cls in type(error).__mro__:
            if cls.__name__ in _ROW_LEVEL_ERROR_NAMES:
                return cls.__name__
    return None


def refusal_reason(exc: BaseException) -> str:
    """A short code for why a write was refused: duplicate_key, missing_required, invalid_value, unavailable,
    database_error, or the code a zonesync error carries itself (`reason`: schema_changed, ...)."""
    own = getattr(exc, "reason", None)
    if isinstance(exc, SyncError) and isinstance(own, str):
        return own
    cause = exc.__cause__ if isinstance(exc, SyncError) and exc.__cause__ else exc
    if is_transient(cause):
        return "unavailable"
    original = _original(cause)
    errors = driver_errors_for(original)
    return (errors.refusal(original) if errors else None) or "database_error"


def refused_at(exc: BaseException) -> RefusedAt:
    """The columns and the constraint a database names in refusing a row (a zonesync error: in its cause)."""
    cause = exc.__cause__ if isinstance(exc, SyncError) and exc.__cause__ else exc
    original = _original(cause)
    errors = driver_errors_for(original)
    return errors.refused_at(original) if errors else NOWHERE


# A database's failure as a caller is told it (by `refusal_reason`), when the database names nothing more.
_FAILURE_WORDS = {
    "duplicate_key": "refused: a row with this key, or with this value of a unique column, exists already",
    "missing_required": "refused: a column that needs a value has none",
    "invalid_value": "refused: a value does not fit its column",
    "unavailable": "failed: the database is unavailable or did not answer in time",
    "database_error": "failed: the database refused it (the zonesync log has its message)",
}


def refusal_words(reason: str, at: RefusedAt) -> str:
    """Why a write was refused, in zonesync's words, naming the columns and the constraint the database named
    (never a value). The reason code is not in them: whoever reports the refusal adds it once."""
    column = f"column{'s' if len(at.columns) > 1 else ''} {', '.join(map(repr, at.columns))}" if at.columns else ""
    constraint = f"constraint {at.constraint!r}" if at.constraint else ""
    both = f"{column} ({constraint})" if column and constraint else column or constraint
    if reason == "duplicate_key" and both:
        return (
            f"refused: another row has the same value of {both}"
            if column
            else f"refused: another row has the same value ({constraint})"
        )
    if reason == "missing_required" and column:
        return f"refused: {column} needs a value and has none"
    if reason == "invalid_value" and column and constraint:
        return f"refused: a value of {column} breaks {constraint}"
    if reason == "invalid_value" and both:
        return f"refused: a value does not fit {column}" if column else f"refused: a value breaks {constraint}"
    return _FAILURE_WORDS[reason]


def translate(exc: BaseException, *, what: str, mapping: str | None = None) -> SyncError:
    """Turn a driver exception into a SyncError saying what was being done; secrets removed. Its `for_caller`
    says why in zonesync's words, naming the columns and the constraint, without the reason code."""
    if isinstance(exc, SyncError):
        return exc
    message = f"{what} failed: {short_message(exc)}"
    public = f"{what} {refusal_words(refusal_reason(exc), refused_at(exc))}"
    if is_transient(exc):
        return TransientSyncError(message, mapping=mapping, public=public)
    return TerminalSyncError(message, mapping=mapping, public=public)


def names_the_refusal(exc: BaseException) -> bool:
    """Whether zonesync's words for a refusal say all the database did (its reason and its names), so its own
    message adds nothing a log needs."""
    at = refused_at(exc)
    return refusal_reason(exc) not in ("unavailable", "database_error") and bool(at.columns or at.constraint)


def diagnosis(original: BaseException, profile: EngineProfile, *, connecting: bool) -> tuple[str, bool] | None:
    """The clear line for a driver error that is about a limit, and whether the server went silent; else None."""
    errors = driver_errors_for(original)
    lines = (errors.message(original) if errors else str(original)).strip().splitlines()
    first = lines[0].strip() if lines else type(original).__name__
    lowered = first.lower()
    limits = profile.limits
    if connecting and ("timeout expired" in lowered or "timed out" in lowered):
        return f"no answer from {profile.label} within ZONESYNC_CONNECT_TIMEOUT={limits.connect:g}s", True
    reached = errors.limit_reached(original) if errors else None
    if reached == "silent":
        return f"no answer from {profile.label} within {limits.explain_deadline()}: connection given up", True
    if reached == "statement":
        return f"{first} (ZONESYNC_STATEMENT_TIMEOUT={limits.statement:g}s)", False
    if reached == "lock":
        return f"{first} (ZONESYNC_LOCK_TIMEOUT={limits.lock:g}s)", False
    return None
