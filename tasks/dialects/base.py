"""The dialect interface: one class assembled from its capabilities, each in its own module.

- `core`: the engine, the statement cache, the database's traits, how it connects, what its errors mean;
- `reading`: the unsynced rows' query and connectorx reads;
- `writing`: upserts through bound statements or a bulk-loaded temporary table;
- `claiming`: flags set under the guard of the values read, and set back;
- `exactness`: values a column would not keep, refused before any write;
- `reconciling`: canonical text and hashes for the reconciliation queries;
- `installing`: the writers'-contract trigger and index advice.

A database's module (`postgresql`, `mariadb`, `sqlite`) subclasses `Dialect`, overriding the pieces where it
differs, and describes its connection rules (`connecting.Connecting`) and driver errors
(`driver_errors.DriverErrors`) beside it.
"""

from __future__ import annotations

from zonesync.tasks.dialects.claiming import Claims
from zonesync.tasks.dialects.core import CLAIM_ROW, UTC_TEXT_FORMAT
from zonesync.tasks.dialects.exactness import Exactness
from zonesync.tasks.dialects.installing import Installing, VersionKind, WritersTrigger
from zonesync.tasks.dialects.reconciling import Reconciling


class Dialect(Claims, Exactness, Reconciling, Installing):
    """Database-specific reads, writes, flags, checks, reconciliation and DDL; subclasses override small pieces."""


__all__ = ["CLAIM_ROW", "UTC_TEXT_FORMAT", "Dialect", "VersionKind", "WritersTrigger"]
