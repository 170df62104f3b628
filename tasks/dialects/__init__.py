"""Per-database behaviour behind one interface; the only place that knows which database it talks to.

Every module of this package that defines `DIALECT` (a `Dialect` subclass) is a supported database: adding one
is adding its module (and its tests), nothing else. Its class says how to connect (`connecting`), what its
driver's errors mean (`errors`), and how it reads, writes, flags and reconciles.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from sqlalchemy.engine import Engine

from zonesync.tasks.dialects.base import Dialect
from zonesync.tasks.dialects.driver_errors import DriverErrors


@functools.cache
def _dialects() -> dict[str, type[Dialect]]:
    """Each URL scheme and SQLAlchemy dialect name a database answers to, and its dialect class."""
    found: dict[str, type[Dialect]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        dialect = getattr(module, "DIALECT", None)
        if isinstance(dialect, type) and issubclass(dialect, Dialect):
            found |= dict.fromkeys(dialect.connecting.url_names, dialect)
    return found


def supported_names() -> list[str]:
    """The URL schemes zonesync accepts."""
    return sorted(_dialects())


def dialect_class(name: str) -> type[Dialect] | None:
    """The dialect of a URL scheme or SQLAlchemy dialect name ('postgresql', 'mysql', ...), if supported."""
    return _dialects().get(name)


def dialect_for(engine: Engine) -> Dialect:
    """The dialect object for an engine."""
    return _dialects()[engine.dialect.name](engine)


def driver_errors(original: BaseException) -> DriverErrors | None:
    """What the exceptions of the driver that raised `original` mean; None if no database driver raised it."""
    return next((d.errors for d in set(_dialects().values()) if d.errors.owns(original)), None)


DIALECTS = _dialects()

__all__ = ["DIALECTS", "Dialect", "dialect_class", "dialect_for", "driver_errors", "supported_names"]
