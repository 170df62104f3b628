"""The dialect interface and the algorithm every server database shares.

Writes go through a temporary table: bulk-load the batch (the only per-database piece), then one
set-based statement upserts the target or flags the source. Statements are SQLAlchemy Core; only the
bulk-load command (COPY, LOAD DATA) is text, with identifiers quoted by SQLAlchemy's preparer.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Literal

import connectorx as cx
import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zonesync.tasks.cxread import connectorx_query, connectorx_url, read_within_deadline

UTC_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S%.6f"
CLAIM_ROW = "zonesync_row"  # the position of a guard row, loaded beside it so the rows claimed can be told


def _beyond_connectorx_decimal(sql_type: Any) -> bool:
    """A numeric column whose values may not fit Decimal(38, 10): more than 10 decimals or 28 integer digits."""
    if not isinstance(sql_type, sa.Numeric) or isinstance(sql_type, sa.Float):
        return False
    if sql_type.scale is None or sql_type.precision is None:
        return True
    return sql_type.scale > 10 or sql_type.precision - sql_type.scale > 28


VersionKind = Literal["timestamptz", "timestamp", "integer", "text_timestamp"]


@dataclass(frozen=True)
class WritersTrigger:
    """What the writers'-contract trigger of one source table enforces: when an UPDATE changes a watched column
    of a row whose flag stays true, the flag goes back to false; when it leaves the version column as it was,
    the version moves on (`version_kind` says how: now, or + 1)."""

    table: sa.Table
    watched: tuple[str, ...]
    flag: str
    keys: tuple[str, ...]
    version: str | None = None
    version_kind: VersionKind | None = None

    @property
    def name(self) -> str:
        """The trigger's (and on PostgreSQL its function's) name."""
        return f"zonesync_writers_{self.table.name}"[:63]


class Dialect:
    """Database-specific reads and bulk writes; subclasses override small pieces."""

    name: ClassVar[str] = "base"
    text_type: ClassVar[sa.types.TypeEngine[Any]] = sa.Text()
    small_batch: ClassVar[int] = 100  # up to this many rows, bound statements beat a temporary table
    supports_partial_index: ClassVar[bool] = True
    row_locks: ClassVar[bool] = True  # two transactions may claim different rows at once

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

    # -- reading --------------------------------------------------------------------------------
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
        url, sql = connectorx_url(self.engine), connectorx_query(self.engine, self.render(query))
        frame = read_within_deadline(self.engine, lambda: cx.read_sql(url, sql, return_type="polars"))
        return frame if isinstance(frame, pl.DataFrame) else pl.from_arrow(frame)  # type: ignore[return-value]

    def frame_from_rows(self, rows: Sequence[Sequence[Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Rows fetched through the driver (INSERT ... RETURNING) as a frame like `read_frame` gives; a column
        with no value to tell its type by (all NULL) takes its declared type."""
        frame = pl.DataFrame([tuple(row) for row in rows], schema=list(schema), orient="row", infer_schema_length=None)
        return frame.with_columns(pl.col(name).cast(schema[name]) for name, dtype in frame.schema.items()
                                  if dtype == pl.Null)  # fmt: skip

    # -- writing --------------------------------------------------------------------------------
    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Values in the form the bulk-load path of this database reads exactly."""
        return frame

    def bulk_load(self, conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
        """Load an encoded frame into a (temporary) table as fast as this database allows."""
        raise NotImplementedError

    def temp_table(self, name: str, like: sa.Table, columns: Sequence[str]) -> sa.Table:
        """A temporary table with the given columns of `like` (an integer for CLAIM_ROW), without constraints."""
        return sa.Table(
            name,
            sa.MetaData(),
            *(sa.Column(c, like.c[c].type if c != CLAIM_ROW else sa.BigInteger()) for c in columns),
            prefixes=["TEMPORARY"],
        )

    def load_temp(self, conn: Connection, name: str, like: sa.Table, frame: pl.DataFrame) -> sa.Table:
        """Create a temporary table shaped like `like` and load `frame` into it."""
        temp = self.temp_table(name, like, frame.columns)
        temp.drop(conn, checkfirst=True)
        temp.create(conn)
        self.bulk_load(conn, temp, self.encode(frame))
        return temp

    # The three statement primitives every dialect provides; the statements below are built from them.
    def insert(self, table: sa.Table) -> Any:
        """This database's INSERT construct (with its conflict clause methods)."""
        raise NotImplementedError

    def new_values(self, statement: Any) -> Any:
        """The pseudo-table of proposed row values: `excluded` (PostgreSQL, SQLite)."""
        return statement.excluded

    def on_conflict_update(
        self,
        statement: Any,
        keys: Sequence[str],
        set_: dict[str, Any],
        where: sa.ColumnElement[bool] | None = None,
    ) -> sa.Insert:
        """ON CONFLICT (keys) DO UPDATE SET ... [WHERE ...] (PostgreSQL, SQLite)."""
        return statement.on_conflict_do_update(index_elements=list(keys), set_=set_, where=where)

    def upsert_from(self, target: sa.Table, temp: sa.Table, keys: Sequence[str]) -> sa.Insert:
        """INSERT ... SELECT ... FROM temp that updates existing keys, skipping rows that would not change."""
        columns = [column.name for column in temp.columns]
        statement = self.insert(target).from_select(columns, sa.select(*temp.columns))
        new = self.new_values(statement)
        updates = [name for name in columns if name not in keys] or list(keys[:1])
        changed = sa.or_(*(sa.not_(self.same_value(target.c[name], new[name])) for name in updates))
        upsert = self.on_conflict_update(statement, keys, {name: new[name] for name in updates}, changed)
        return upsert.execution_options(preserve_rowcount=True)  # SQLAlchemy reports no INSERT rowcount otherwise

    def execute_bound(self, conn: Connection, statement: sa.Executable, frame: pl.DataFrame) -> int:
        """Run a statement with bound parameters once per row of `frame`; the rows it affected."""
        rows = list(frame.iter_rows(named=True))
        return int(conn.execute(statement, rows[0] if len(rows) == 1 else rows).rowcount)  # one row: no executemany

    def upsert(self, conn: Connection, target: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> int:
        """Insert or update the rows of `frame` (target column names) into `target`; how many rows were inserted
        or changed (a row already equal, byte for byte, is left alone and not counted).

        A few rows (a push, a small backlog) go as one bound statement; more go through a temporary table,
        bulk-loaded: a temporary table costs four round trips, a bound statement one per ~1000 rows.
        """
        if frame.height <= self.small_batch:
            shape = ("upsert", target, tuple(frame.columns), tuple(keys))
            statement = self._statement(shape, lambda: self.upsert_statement(target, frame.columns, keys))
            return self.execute_bound(conn, statement, frame)
        temp = self.load_temp(conn, "zonesync_upsert", target, frame)
        changed = int(conn.execute(self.upsert_from(target, temp, keys)).rowcount)
        temp.drop(conn)
        return changed

    def upsert_statement(self, target: sa.Table, columns: Sequence[str], keys: Sequence[str]) -> sa.Insert:
        """INSERT ... VALUES (bound) that updates existing keys, skipping rows that would not change."""
        statement = self.insert(target).values({name: sa.bindparam(name) for name in columns})
        new = self.new_values(statement)
        updates = [name for name in columns if name not in keys] or list(keys[:1])
        changed = sa.or_(*(sa.not_(self.same_value(target.c[name], new[name])) for name in updates))
        upsert = self.on_conflict_update(statement, keys, {name: new[name] for name in updates}, changed)
        return upsert.execution_options(preserve_rowcount=True)  # SQLAlchemy reports no INSERT rowcount otherwise

    # -- claiming: flag rows and lock them for the rest of the transaction -------------------------------
    def claim(
        self,
        conn: Connection,
        source: sa.Table,
        flag_column: str,
        guard: pl.DataFrame,
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
    ) -> pl.Series | None:
        """Flag the rows of `guard` whose guard columns still hold the values read, and keep them locked until
        the transaction ends; None when every row was claimed, else the positions (in `guard`) of those that were.

        The caller writes the claimed rows to the other zone before committing: whoever wants to change them
        meanwhile waits, so the other zone never receives a value the source no longer holds.
        """
        if guard.height <= self.small_batch:
            return self._claim_bound(conn, source, flag_column, guard, keys, dtypes)
        temp = self.load_temp(conn, "zonesync_flag", source, guard.with_row_index(CLAIM_ROW))
        where = self._guard_conditions(source, temp, guard.columns, keys, dtypes)
        where.append(self.key_range(source, guard, keys))
        claimed: pl.Series | None = None
        if conn.execute(self._flag_where(source, flag_column, where)).rowcount != guard.height:
            query = self._claimed_where(source, flag_column, where).with_only_columns(temp.c[CLAIM_ROW])
            claimed = pl.Series([row for (row,) in conn.execute(query)], dtype=pl.UInt32).sort()
        temp.drop(conn)
        return claimed

    def _claim_bound(
        self,
        conn: Connection,
        source: sa.Table,
        flag_column: str,
        guard: pl.DataFrame,
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
    ) -> pl.Series | None:
        """`claim` for a few rows: a bound UPDATE per row; only if some were not flagged, a locking SELECT per row."""
        named = {name: f"read_{name}" for name in guard.columns}  # a column's own name is reserved in an UPDATE
        bound = guard.clone()  # renamed without copying (a rename is a query)
        bound.columns = [named[name] for name in guard.columns]
        shape = ("claim", source, flag_column, tuple(keys), *((name, dtypes[name]) for name in guard.columns))
        params: dict[str, sa.BindParameter[Any]] = {name: sa.bindparam(value) for name, value in named.items()}

        def where() -> list[sa.ColumnElement[bool]]:
            return self._guard_conditions(source, params, list(named), keys, dtypes)

        update = self._statement(shape, lambda: self._flag_where(source, flag_column, where()))
        if self.execute_bound(conn, update, bound) == guard.height:
            return None
        select = self._statement(("claimed", *shape), lambda: self._claimed_where(source, flag_column, where()))
        rows = self.bind_form(bound).iter_rows(named=True)
        return pl.Series([i for i, row in enumerate(rows) if conn.execute(select, row).first()], dtype=pl.UInt32)

    def _flag_where(self, source: sa.Table, flag_column: str, where: list[sa.ColumnElement[bool]]) -> sa.Update:
        return sa.update(source).where(*where, self.not_synced(source.c[flag_column])).values({flag_column: sa.true()})

    def _claimed_where(self, source: sa.Table, flag_column: str, where: list[sa.ColumnElement[bool]]) -> sa.Select:
        """The rows still as read and flagged (by this transaction, or by another writer with the same values),
        locked: either way the other zone may be given these values."""
        flagged = source.c[flag_column].is_(sa.true())
        return sa.select(sa.literal(1)).where(*where, flagged).with_for_update()

    def unclaim(self, conn: Connection, source: sa.Table, flag_column: str, keys: pl.DataFrame) -> None:
        """Set the flag of claimed rows back to false (the other zone refused them)."""
        if keys.is_empty():
            return
        named = {name: f"key_{name}" for name in keys.columns}
        statement = self._statement(
            ("unclaim", source, flag_column, *keys.columns),
            lambda: (
                sa.update(source)
                .where(*(source.c[name] == sa.bindparam(bound) for name, bound in named.items()))
                .values({flag_column: sa.false()})
            ),
        )
        bound = keys.clone()
        bound.columns = list(named.values())
        self.execute_bound(conn, statement, bound)

    def bind_form(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Values in the form this driver binds exactly (as `execute_bound` sends them)."""
        return frame

    @staticmethod
    def same_value(column: sa.ColumnElement[Any], value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Null-safe equality, byte for byte: a change a collation calls equal (case, trailing blanks) is a change."""
        return column.is_not_distinct_from(value)

    def _guard_conditions(
        self,
        source: sa.Table,
        values: sa.Table | dict[str, sa.BindParameter[Any]],
        columns: Sequence[str],
        keys: Sequence[str],
        dtypes: dict[str, pl.DataType],
    ) -> list[sa.ColumnElement[bool]]:
        """Key equality plus exact null-safe equality of each compared column, as it was read."""
        conditions = []
        expression: sa.ColumnElement[Any]
        value: sa.ColumnElement[Any]
        for column in columns:
            if isinstance(values, sa.Table):  # loaded into columns of the source's own types
                value, expression = values.c[column], source.c[column]
            else:  # bound raw values: compare with the column as it was read
                value, expression = values[column], self.read_expression(source.c[column], dtypes[column])
            if column in keys:
                conditions.append(source.c[column] == value)
            else:
                conditions.append(self.same_value(expression, value))
        return conditions

    def supports_two_phase(self) -> bool:
        """Whether transactions can be prepared and committed later (PostgreSQL, MariaDB XA)."""
        return False

    def writers_trigger(self, spec: WritersTrigger) -> list[str]:
        """DDL that (re)installs the writers'-contract trigger of a source table (idempotent)."""
        raise NotImplementedError

    # -- bookkeeping ----------------------------------------------------------------------------
    def insert_or_update(
        self,
        table: sa.Table,
        keys: Sequence[str],
        replace: Sequence[str],
        extra: dict[str, Any] | None = None,
    ) -> sa.Insert:
        """INSERT ... VALUES (bound) that on key conflict takes the new `replace` columns and `extra`."""
        statement = self.insert(table)
        new = self.new_values(statement)
        return self.on_conflict_update(statement, keys, {name: new[name] for name in replace} | (extra or {}))

    def table_advice(self, table: sa.Table) -> list[str]:
        """Storage settings that make flagging cheaper on this database (none by default)."""
        return []

    # -- exactness: values a column of this database would not keep as sent ----------------------
    def refusal(self, column: sa.Column[Any], value: Any) -> str | None:
        """Why `column` cannot hold `value` (as bound for it) exactly, or None: checked before any write."""
        return None

    def inexact_rows(self, table: sa.Table, frame: pl.DataFrame, row: str) -> pl.DataFrame:
        """The rows of `frame` (by its `row` column) that `table` would store altered, with the detail."""
        return pl.DataFrame(schema={row: pl.UInt32, "detail": pl.String})

    def column_warnings(self, table: sa.Table, columns: Sequence[str]) -> list[str]:
        """What `zonesync init` says about columns of `table` that cannot keep every value exactly."""
        return []

    # -- documentation --------------------------------------------------------------------------
    def recommended_index(self, table: sa.Table, keys: Sequence[str], flag_column: str) -> str:
        """DDL of the index that makes reading the unsynced rows cheap."""
        flag = table.c[flag_column]
        index = sa.Index(
            f"ix_{table.name}_{flag_column}_pending"[:63],
            *(table.c[key] for key in keys),
            postgresql_where=self.not_synced(flag),
            sqlite_where=self.not_synced(flag),
        )
        return str(sa.schema.CreateIndex(index).compile(dialect=self.engine.dialect)).strip() + ";"

    # -- reconciliation: one canonical text per value and one hash on every database -------------
    max_decimal_precision: ClassVar[int] = 65

    def prepare_reconcile(self, conn: Connection) -> None:
        """Ready a connection for the reconciliation queries (SQLite registers its functions)."""

    def as_text(self, expression: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """An expression as this database's text type."""
        return sa.cast(expression, self.text_type)

    def decimal_text(self, column: sa.ColumnElement[Any], scale: int) -> sa.ColumnElement[Any]:
        """Exactly `scale` decimals; the widest precision, so an oversized value differs instead of failing."""
        return sa.cast(column, sa.Numeric(self.max_decimal_precision, scale))

    def timestamp_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """'YYYY-MM-DD HH:MM:SS.ffffff' in UTC."""
        raise NotImplementedError

    def date_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """'YYYY-MM-DD'."""
        raise NotImplementedError

    def concat(self, parts: Sequence[sa.ColumnElement[str]]) -> sa.ColumnElement[str]:
        """Text concatenation (NULL if any part is NULL)."""
        return functools.reduce(operator.add, parts)

    def md5(self, text: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """The MD5 digest of UTF-8 text as 32 lowercase hex digits."""
        return sa.func.md5(text, type_=sa.String())

    def hash32(self, digest: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """The first 8 hex digits of a digest as a non-negative integer."""
        raise NotImplementedError

    def exact_sum(self, column: sa.ColumnElement[Any], dtype: pl.DataType) -> sa.ColumnElement[Any]:
        """SUM without rounding (numeric / DECIMAL arithmetic on servers)."""
        return sa.func.sum(column)

    def moment_bound(self, moment: datetime, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A UTC instant in the form a timestamp column stores it, to compare with."""
        return sa.literal(moment, sa.DateTime(timezone=True))

    def date_bound(self, day: date) -> sa.ColumnElement[Any]:
        """A date in the form a date column stores it."""
        return sa.literal(day, sa.Date())
