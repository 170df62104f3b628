"""Reading: the unsynced rows' query, keyset pages, and connectorx reads into polars frames."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import connectorx as cx
import polars as pl
import sqlalchemy as sa

from zonesync.schemas.errors import NoAnswer
from zonesync.tasks.dialects.core import DialectCore
from zonesync.tasks.dialects.limits import STATEMENT_GRACE_SECONDS, Limits

T = TypeVar("T")


def _beyond_connectorx_decimal(sql_type: Any) -> bool:
    """A numeric column whose values may not fit Decimal(38, 10): more than 10 decimals or 28 integer digits."""
    if not isinstance(sql_type, sa.Numeric) or isinstance(sql_type, sa.Float):
        return False
    if sql_type.scale is None or sql_type.precision is None:
        return True
    return sql_type.scale > 10 or sql_type.precision - sql_type.scale > 28


class Reads(DialectCore):
    """How rows are selected and read without loss."""

    def read_expression(self, column: sa.ColumnElement[Any], dtype: pl.DataType) -> sa.ColumnElement[Any]:
        """How a column is selected so that connectorx returns it without loss.

        connectorx returns numerics as Decimal(38, 10): a wider scale (or an unconstrained numeric) would be
        rounded before zonesync could see it, so such columns are read as text and parsed exactly.
        """
        return sa.cast(column, self.text_type) if _beyond_connectorx_decimal(column.type) else column

    def not_synced(self, flag: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Rows whose flag is not true; NULL counts as not synced (nothing is lost to a missing flag)."""
        return flag.is_not(sa.true())

    def keyset_after(self, keys: Sequence[sa.ColumnElement[Any]], values: Sequence[Any]) -> sa.ColumnElement[bool]:
        """Rows whose key sorts after `values`: a row-value comparison the index can serve."""
        if len(keys) == 1:
            return keys[0] > values[0]
        return sa.tuple_(*keys) > sa.tuple_(*(sa.literal(v) for v in values))

    def key_range(self, table: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> sa.ColumnElement[bool]:
        """The batch's key range, from its first and last row *in the order the database returned them*
        (text keys sort by the database's collation, not polars' byte order): one index range to probe."""
        columns = [table.c[key] for key in keys]
        first, last = frame.select(keys).row(0), frame.select(keys).row(-1)
        if len(columns) == 1:
            return columns[0].between(first[0], last[0])
        row = sa.tuple_(*columns)
        return sa.and_(row >= sa.tuple_(*map(sa.literal, first)), row <= sa.tuple_(*map(sa.literal, last)))

    def render(self, statement: sa.ClauseElement) -> str:
        """A statement as literal SQL for connectorx, which takes no bound parameters.

        Only keyset boundaries read from the database itself are rendered, by SQLAlchemy's literal
        processors (which quote and escape them); identifiers come from validated mappings.
        """
        dialect_class: Any = type(self.engine.dialect)
        neutral = dialect_class(paramstyle="named")
        return str(statement.compile(dialect=neutral, compile_kwargs={"literal_binds": True}))

    def read_frame(self, query: sa.Select[Any], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Run a query through connectorx into a polars frame (`schema`: the types the columns should carry).

        connectorx gets the engine's limits (its URL and, on MariaDB, the query carry them) and is waited for at
        most the connect and statement limits plus the grace (a server that never answers: NoAnswer).
        """
        url = self.connecting.reader_url(self.engine, self.limits)
        sql = self.connecting.connectorx_query(self.render(query), self.limits)
        read = functools.partial(cx.read_sql, url, sql, return_type="polars")
        frame = read_within_deadline(read, self.limits, self.label)
        return frame if isinstance(frame, pl.DataFrame) else pl.from_arrow(frame)  # type: ignore[return-value]

    def frame_from_rows(self, rows: Sequence[Sequence[Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Rows fetched through the driver (INSERT ... RETURNING) as a frame like `read_frame` gives; a column
        with no value to tell its type by (all NULL) takes its declared type."""
        frame = pl.DataFrame([tuple(row) for row in rows], schema=list(schema), orient="row", infer_schema_length=None)
        return frame.with_columns(pl.col(name).cast(schema[name]) for name, dtype in frame.schema.items()
                                  if dtype == pl.Null)  # fmt: skip


def read_within_deadline(read: Callable[[], T], limits: Limits, label: str) -> T:
    """Run a connectorx read, waiting for it at most the connect and statement `limits` plus the grace; then a
    NoAnswer error (transient) says which zone did not answer (`label`: 'the internet zone').

    connectorx cannot be interrupted, so the read runs in a daemon thread and is left behind if it never returns
    (holding its connection until the process ends). A daemon thread never holds up the interpreter's exit,
    where a ThreadPoolExecutor's worker would: those are joined at exit.
    """
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, read()))
        except BaseException as exc:  # handed to the caller's thread, raised there
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="zonesync-read", daemon=True).start()
    if not done.wait(limits.connect + limits.deadline):
        raise NoAnswer(
            f"reading from {label} took longer than ZONESYNC_STATEMENT_TIMEOUT={limits.statement:g}s "
            f"(+ {STATEMENT_GRACE_SECONDS:g}s, + ZONESYNC_CONNECT_TIMEOUT={limits.connect:g}s to connect): no answer"
        )
    succeeded, value = outcome[0]
    if succeeded:
        return value
    raise value
