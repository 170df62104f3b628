"""Per-database behaviour behind one interface; the only place that knows which database it talks to."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from zonesync.tasks.dialects.base import Dialect
from zonesync.tasks.dialects.mariadb import MariaDBDialect
from zonesync.tasks.dialects.postgresql import PostgresDialect
from zonesync.tasks.dialects.sqlite import SQLiteDialect

DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": SQLiteDialect,
    "postgresql": PostgresDialect,
    "mysql": MariaDBDialect,
    "mariadb": MariaDBDialect,
}


def dialect_for(engine: Engine) -> Dialect:
    """The dialect object for an engine."""
    return DIALECTS[engine.dialect.name](engine)


__all__ = ["DIALECTS", "Dialect", "dialect_for"]
