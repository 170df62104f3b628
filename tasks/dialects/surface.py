"""What a database module provides: the hot path as one object, and beside it the rarer capabilities.

- `Dialect` — what every batch and push runs through, assembled from its capabilities (each in its module):
  `reading` (the unsynced rows' query, connectorx reads), `writing` (upserts through bound statements or a
  bulk-loaded temporary table), `claiming` (flags set under the guard of the values read, and set back) and
  `exactness` (values a live column would not keep, refused before any write), on `core` (the engine with its
  limits, the statement cache, the database's traits, how it connects and what its errors mean).
- `Reconciling` — canonical text and hashes for the reconciliation's queries.
- `Installing` — the writers'-contract trigger, grants and index advice, built on the engine's dialect.

A database module (`postgresql`, `mariadb`, `sqlite`) declares `URL_NAMES` and `DRIVER_PACKAGES` as literals
(read without importing it), subclasses each of the three, overriding small pieces in capability order, and
ends with `DATABASE = Database(...)`. The abstract methods are what a new database must provide; a database
without `INSERT ... ON CONFLICT (keys)` takes `update_then_insert.UpdateThenInsert` as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from zonesync.tasks.dialects.claiming import Claimed, Claims
from zonesync.tasks.dialects.connecting import Connecting
from zonesync.tasks.dialects.driver_errors import DriverErrors
from zonesync.tasks.dialects.exactness import Exactness
from zonesync.tasks.dialects.installing import Installing
from zonesync.tasks.dialects.reconciling import Reconciling

__all__ = ["Claimed", "Database", "Dialect"]


class Dialect(Claims, Exactness):
    """The hot path of one database: reads, writes, claims and exactness checks on one engine."""


@dataclass(frozen=True)
class Database:
    """One supported database: its hot-path dialect and, beside it, its reconciling and installing pieces."""

    dialect: type[Dialect]
    reconciling: Reconciling
    installing: type[Installing]

    @property
    def connecting(self) -> Connecting:
        """How zonesync connects to it."""
        return self.dialect.connecting

    @property
    def errors(self) -> DriverErrors:
        """What its driver's exceptions mean."""
        return self.dialect.errors
