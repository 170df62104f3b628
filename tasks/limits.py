"""Bounded waits (ZONESYNC_CONNECT_TIMEOUT, _STATEMENT_TIMEOUT, _LOCK_TIMEOUT), and the clear line an error
about a limit becomes.

Each database module gives its driver these limits so that the server enforces the statement and lock limits
itself (`Connecting.connect_args`), and gives a connection up when the server does not answer at all (the
PostgreSQL watchdog, PyMySQL's socket timeouts); connectorx reads are waited for with a deadline
(`zonesync.tasks.dialects.reading.read_within_deadline`).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

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


def milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
