"""Each engine's profile: the limits it was created with and how its errors name the database.

The engines module records a profile when it creates an engine; the dialect built for that engine is handed
both (`engines.dialect_for`), and error messages name the database by its label, never by its URL.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from sqlalchemy.engine import URL, Engine

from zonesync.tasks.dialects.limits import Limits

# /health: each zone gets this long (connect and query) so that the answer comes within ~2 s whatever happens.
HEALTH_SECONDS = 1.5


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
