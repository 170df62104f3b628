"""What every capability of the hot path shares: the engine with its limits, the statement cache, the traits."""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.tasks.dialects.connecting import Connecting
from zonesync.tasks.dialects.driver_errors import DriverErrors
from zonesync.tasks.dialects.limits import Limits

UTC_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S%.6f"
CLAIM_ROW = "zonesync_row"  # the position of a guard row, loaded beside it so the rows claimed can be told


class DialectCore(ABC):
    """A database's traits, how zonesync connects to it and reads its errors, and the engine it works on."""

    name: ClassVar[str] = "base"
    connecting: ClassVar[Connecting]
    errors: ClassVar[DriverErrors]
    text_type: ClassVar[sa.types.TypeEngine[Any]] = sa.Text()
    small_batch: ClassVar[int] = 100  # up to this many rows, bound statements beat a temporary table
    row_locks: ClassVar[bool] = True  # two transactions may claim different rows at once
    # An index on a row's partition number serves a claim that names the partition (`zonesync init` advises one
    # where the database indexes expressions); without one, the condition would only cost a hash per row scanned.
    indexes_partitions: ClassVar[bool] = False
    returning_reads_inserted_columns: ClassVar[bool] = False  # RETURNING needs SELECT only of what it returns

    def __init__(self, engine: Engine, limits: Limits, label: str) -> None:
        """`limits`: the engine's bounded waits; `label`: how errors name its database ('the internet zone')."""
        self.engine = engine
        self.limits = limits
        self.label = label
        # Bound statements, and the temporary tables they are built on, by what shapes them: built (and compiled,
        # by SQLAlchemy's cache, which knows a table by its identity) once per shape.
        self._statements: dict[tuple[Any, ...], Any] = {}

    def _statement(self, shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """The statement (or temporary table) for `shape` (its table, column names, ...), built by `build` the first
        time."""
        statement = self._statements.get(shape)
        if statement is None:
            statement = self._statements.setdefault(shape, build())
        return statement

    def supports_two_phase(self) -> bool:
        """Whether transactions can be prepared and committed later (PostgreSQL, MariaDB XA)."""
        return False
