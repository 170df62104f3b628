"""What every capability of a dialect shares: the engine, the statement cache, and the database's traits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zonesync.tasks.dialects.connecting import Connecting
from zonesync.tasks.dialects.driver_errors import DriverErrors

UTC_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S%.6f"
CLAIM_ROW = "zonesync_row"  # the position of a guard row, loaded beside it so the rows claimed can be told


class DialectCore:
    """A database's traits and how zonesync connects to it and reads its errors."""

    name: ClassVar[str] = "base"
    text_type: ClassVar[sa.types.TypeEngine[Any]] = sa.Text()
    small_batch: ClassVar[int] = 100  # up to this many rows, bound statements beat a temporary table
    supports_partial_index: ClassVar[bool] = True
    row_locks: ClassVar[bool] = True  # two transactions may claim different rows at once
    returning_reads_inserted_columns: ClassVar[bool] = False  # RETURNING needs SELECT only of what it returns
    connecting: ClassVar[Connecting] = Connecting()
    errors: ClassVar[DriverErrors] = DriverErrors()

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Bound statements by what shapes them: built (and compiled, by SQLAlchemy's cache) once per shape.
        self._statements: dict[tuple[Any, ...], Any] = {}

    def _statement(self, shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """The statement for `shape` (its table, column names, ...), built by `build` the first time."""
        statement = self._statements.get(shape)
        if statement is None:
            statement = self._statements.setdefault(shape, build())
        return statement

    def supports_two_phase(self) -> bool:
        """Whether transactions can be prepared and committed later (PostgreSQL, MariaDB XA)."""
        return False
