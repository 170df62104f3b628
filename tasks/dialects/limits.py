"""Bounded waits (ZONESYNC_CONNECT_TIMEOUT, _STATEMENT_TIMEOUT, _LOCK_TIMEOUT) as a dialect is given them.

Each database module hands these limits to its driver so that the server enforces the statement and lock limits
itself (`Connecting.connect_args`), and gives a connection up when the server does not answer at all (the
PostgreSQL watchdog, PyMySQL's socket timeouts); connectorx reads are waited for with a deadline
(`reading.read_within_deadline`). An engine's limits are handed to its dialect when the dialect is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zonesync.schemas.settings import Settings, get_settings

# The client waits this much longer than the server's own statement limit: the server's timeout normally
# answers first (one clear error, the connection kept); the client gives up only when nothing arrives at all.
STATEMENT_GRACE_SECONDS = 2.0


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


def milliseconds(seconds: float) -> int:
    """A limit in whole milliseconds, at least 1 (servers read 0 as 'no limit')."""
    return max(1, math.ceil(seconds * 1000))


def whole_seconds(seconds: float) -> int:
    """A limit in whole seconds, at least 1 (lock waits take whole seconds)."""
    return max(1, math.ceil(seconds))
