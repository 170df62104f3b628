"""SQLite 3.35+ through the standard library driver: how to open a file, what its errors mean, executemany of
plain tuples in one transaction (no COPY, and no temporary table needed).

SQLite has no exact decimal or tz-aware timestamp type, so those columns are read as text and
parsed exactly; written as canonical text.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, cast

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Engine

from zonesync.schemas.errors import ConfigError
from zonesync.tasks.dialects import sqlite_functions
from zonesync.tasks.dialects.column_shapes import ColumnShape
from zonesync.tasks.dialects.connecting import Connecting
from zonesync.tasks.dialects.core import UTC_TEXT_FORMAT
from zonesync.tasks.dialects.driver_errors import DISCONNECT_WORDS, DriverErrors, LimitReached, RefusedAt
from zonesync.tasks.dialects.installing import DeleteCapture, Installing, TableGrant, VersionKind, WritersTrigger
from zonesync.tasks.dialects.limits import Limits, milliseconds
from zonesync.tasks.dialects.reconciling import Reconciling
from zonesync.tasks.dialects.surface import Database, Dialect

# Read without importing this module (see the package): the names its URLs use, the packages its driver raises.
URL_NAMES = ("sqlite",)
DRIVER_PACKAGES = ("sqlite3",)

_TEXT_READ_TYPES = (pl.Decimal, pl.Datetime, pl.Date)
_MAX_COMPILATIONS = 256


# A column of NUMERIC (or REAL) affinity stores a decimal as a REAL, which gives back 15 significant digits.
_REAL_DIGITS = 15
_NUMERIC_LIMIT = f"SQLite keeps {_REAL_DIGITS} significant digits in a NUMERIC column"


def _numeric_affinity(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.Numeric)


def _significant_digits(value: Decimal) -> int:
    return len(value.normalize().as_tuple().digits)


def _too_many_digits(frame: pl.DataFrame, name: str, row: str) -> pl.DataFrame:
    rows = [
        (position, f"column {name!r}: {_NUMERIC_LIMIT}; this value has {_significant_digits(value)}")
        for position, value in zip(frame[row], frame[name], strict=True)
        if value is not None and _significant_digits(value) > _REAL_DIGITS
    ]
    return pl.DataFrame(rows, schema={row: pl.UInt32, "detail": pl.String}, orient="row")


def _stored_type(dtype: pl.DataType) -> pl.DataType:
    """The polars type of what SQLite hands back for a column read with `read_expression`."""
    if isinstance(dtype, _TEXT_READ_TYPES):
        return pl.String()
    if dtype == pl.Boolean:
        return pl.Int64()
    return dtype


class SQLiteConnecting(Connecting):
    """A file given by an absolute path, in WAL mode, with the lock limit as its busy timeout."""

    def normalize(self, url: URL, setting: str) -> URL:
        self.check_query(url, setting)
        if not url.database or url.database == ":memory:":
            raise ConfigError(f"{setting}: an in-memory SQLite database cannot be shared; give a file path")
        return url.set(database=str(Path(url.database).expanduser().resolve()))

    def prepare(self, url: URL) -> None:
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)

    def missing(self, url: URL) -> str | None:
        return None if Path(url.database or "").exists() else url.database

    def connect_args(self, url: URL, limits: Limits) -> dict[str, Any]:
        return {"timeout": limits.lock, "check_same_thread": False}  # the busy timeout: how long a lock is awaited

    def install(self, engine: Engine, limits: Limits) -> None:
        busy = milliseconds(limits.lock)

        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the reader and the flag writer work on the same file at once; the busy timeout is how long
            # a lock another connection holds is awaited (ZONESYNC_LOCK_TIMEOUT), then "database is locked".
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy}")
            cursor.close()

        sa.event.listen(engine, "connect", pragmas)

    def connectorx_url(self, url: URL, limits: Limits) -> str:
        return f"sqlite://{url.database}"


class SQLiteErrors(DriverErrors):
    """SQLite's errors are told by their message (the codes Python exposes are coarser)."""

    driver_errors = (sqlite3.Error,)
    _LOCKED = "database is locked"
    _KNOWN = ("UNIQUE constraint failed", "NOT NULL constraint failed", "CHECK constraint failed", _LOCKED)
    transient_codes = frozenset({_LOCKED})
    lock_timeout_codes = frozenset({_LOCKED})  # the busy timeout ran out
    refusal_codes = {
        "duplicate_key": frozenset({"UNIQUE constraint failed"}),
        "missing_required": frozenset({"NOT NULL constraint failed"}),
        "invalid_value": frozenset({"CHECK constraint failed"}),
    }
    disconnect_words = (*DISCONNECT_WORDS, "unable to open database file")  # the file's directory is gone

    def code(self, original: BaseException) -> str | None:
        text = str(original)
        return next((known for known in self._KNOWN if known in text), None)

    def refused_at(self, original: BaseException) -> RefusedAt:
        """ "UNIQUE constraint failed: t.a, t.b" and "NOT NULL ...: t.a" name columns; "CHECK ...: c" a constraint
        (or its expression, when it has no name). SQLite quotes no value in them."""
        code, text = self.code(original), str(original)
        named = text.partition(f"{code}: ")[2].strip() if code else ""
        if not named or code == self._LOCKED:
            return RefusedAt()
        if code == "CHECK constraint failed":
            return RefusedAt(constraint=named)
        if named.startswith("index '"):  # a unique index on an expression
            return RefusedAt(constraint=named.removeprefix("index ").strip("'"))
        return RefusedAt(tuple(column.rpartition(".")[2] for column in named.split(", ")))

    def limit_reached(self, original: BaseException) -> LimitReached | None:
        return "lock" if self.code(original) == self._LOCKED else None


class SQLiteDialect(Dialect):
    """SQLite's reads (stdlib driver, not connectorx), writes (executemany in one transaction) and checks."""

    name: ClassVar[str] = "sqlite"
    connecting = SQLiteConnecting()
    errors = SQLiteErrors()
    small_batch: ClassVar[int] = sys.maxsize  # no COPY here: bound statements in one transaction are the fast path
    row_locks: ClassVar[bool] = False  # a writer locks the whole file

    def __init__(self, engine: Engine, limits: Limits, label: str) -> None:
        super().__init__(engine, limits, label)
        self._compilations: dict[int, tuple[sa.Executable, Any]] = {}

    # -- reading --
    def read_expression(self, column: sa.ColumnElement[Any], dtype: pl.DataType) -> sa.ColumnElement[Any]:
        """Decimals, dates and timestamps as their stored text, so nothing passes through a float."""
        if isinstance(dtype, _TEXT_READ_TYPES):
            return sa.cast(column, sa.Text)
        return column

    def not_synced(self, flag: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Spelled so connectorx's SQL parser accepts it (it cannot parse `IS NOT 1`)."""
        return sa.or_(flag.is_(None), flag == sa.false())

    def read_frame(self, query: sa.Select[Any], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Read through the stdlib driver with bound parameters.

        Not connectorx: its SQLite reader does not see pages still in the write-ahead log, so it returns
        rows as they were before recent commits (measured: a flag committed by another connection stayed
        invisible until a checkpoint).
        """
        compiled = query.compile(dialect=self.engine.dialect)
        parameters = [compiled.params[name] for name in compiled.positiontup or []]
        with self.engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            rows = raw.execute(str(compiled), parameters).fetchall()
        return self.frame_from_rows(rows, schema)

    def frame_from_rows(self, rows: Sequence[Sequence[Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """SQLite's values carry no type: the columns are typed as `read_expression` returns them."""
        stored = {name: _stored_type(dtype) for name, dtype in schema.items()}
        return pl.DataFrame([tuple(row) for row in rows], schema=stored, orient="row")

    # -- writing --
    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Exact text for decimals and timestamps, 0/1 for booleans: what stdlib sqlite3 binds safely."""
        converted = []
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Datetime):
                suffix = "%:z" if dtype.time_zone else ""
                converted.append(pl.col(name).dt.strftime(UTC_TEXT_FORMAT + suffix))
            elif isinstance(dtype, pl.Decimal | pl.Date):
                converted.append(pl.col(name).cast(pl.String))
            elif dtype == pl.Boolean:
                converted.append(pl.col(name).cast(pl.Int8))
        return frame.with_columns(converted)

    def insert(self, table: sa.Table) -> Any:
        """SQLite's INSERT construct."""
        return sqlite_insert(table)

    def bulk_load(self, conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
        """No bulk-load command here: one executemany of plain tuples (as fast as SQLite takes rows)."""
        self.execute_bound(conn, sa.insert(table).values({name: sa.bindparam(name) for name in frame.columns}), frame)

    def bind_form(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Exact text for decimals and timestamps, 0/1 for booleans (`encode`)."""
        return self.encode(frame)

    def execute_bound(self, conn: Connection, statement: sa.Executable, frame: pl.DataFrame) -> int:
        """Compiled once, run through the stdlib cursor with plain tuples (3x SQLAlchemy's own executemany)."""
        compiled = self._compiled(statement, conn)
        rows = self.encode(frame).select(list(compiled.positiontup or [])).iter_rows()
        raw: Any = conn.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.executemany(str(compiled), rows)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _compiled(self, statement: sa.Executable, conn: Connection) -> Any:
        """The statement compiled, once per statement object (the cached upsert and flag statements are reused)."""
        compiled = self._compilations.get(id(statement))
        if compiled is None or compiled[0] is not statement:  # the entry holds the statement: its id stays its own
            if len(self._compilations) >= _MAX_COMPILATIONS:
                self._compilations.clear()
            compiled = self._compilations[id(statement)] = (
                statement,
                cast(Any, statement).compile(dialect=conn.dialect),
            )
        return compiled[1]

    @staticmethod
    def same_value(column: sa.ColumnElement[Any], value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Text compared byte for byte, whatever collation (NOCASE, RTRIM) the column declares."""
        if isinstance(column.type, sa.String):
            return column.collate("BINARY").is_not_distinct_from(value)
        return column.is_not_distinct_from(value)

    # -- exactness --
    def column_shape(self, column: sa.Column[Any]) -> ColumnShape:
        """A SQLite column keeps what it is given whatever its declared type (no length, scale or precision), but
        for numbers in a column of NUMERIC affinity (`refusal`, `inexact_rows`)."""
        return ColumnShape(str(column.type).lower())

    def inexact_rows(
        self, table: sa.Table, frame: pl.DataFrame, row: str, longest: Mapping[str, int] = MappingProxyType({})
    ) -> pl.DataFrame:
        """Rows with a decimal beyond 15 significant digits for a column of NUMERIC affinity."""
        found = super().inexact_rows(table, frame, row, longest)
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Decimal) and name in table.c and _numeric_affinity(table.c[name]):
                found = pl.concat([found, _too_many_digits(frame, name, row)])
        return found.unique(row, keep="first", maintain_order=True)

    def refusal(self, column: sa.Column[Any], value: Any) -> str | None:
        """A decimal with more significant digits than a NUMERIC-affinity column keeps (it becomes a float)."""
        if isinstance(value, Decimal) and _numeric_affinity(column) and _significant_digits(value) > _REAL_DIGITS:
            return f"{_NUMERIC_LIMIT}; this value has {_significant_digits(value)}"
        return None

    def catalog_signature(self, conn: Connection, table: sa.Table) -> tuple[tuple[Any, ...], ...]:
        """pragma_table_xinfo: every column's declared type, NOT NULL, default and key position."""
        found = conn.execute(sa.text('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_xinfo(:t)'),
                             {"t": table.name})  # fmt: skip
        return tuple(tuple(row) for row in found)

    def column_warnings(self, table: sa.Table, columns: Mapping[str, tuple[pl.DataType, int | None]]) -> list[str]:
        """Columns of NUMERIC affinity that a mapping declares as exact decimals (SQLite keeps any text length)."""
        return [
            f"column {name!r} of {table.name!r} ({table.c[name].type}) keeps {_REAL_DIGITS} significant digits "
            "exactly: a value with more is refused; declare the column TEXT (zonesync's exact_decimal type does) "
            "to keep every digit"
            for name, (dtype, _longest) in columns.items()
            if isinstance(dtype, pl.Decimal) and name in table.c and _numeric_affinity(table.c[name])
        ]


class SQLiteReconciling(Reconciling):
    """SQLite's canonical text: Python functions where SQLite has none (md5) or stores text (decimals, timestamps)."""

    def prepare_reconcile(self, conn: Connection) -> None:
        """Register the reconciliation functions on this connection."""
        raw: Any = conn.connection.dbapi_connection
        for name, arity, function in (
            ("zonesync_md5", 1, sqlite_functions.md5),
            ("zonesync_hash32", 1, sqlite_functions.hash32),
            ("zonesync_decimal", 2, sqlite_functions.decimal_text),
            ("zonesync_timestamp", 1, sqlite_functions.timestamp_text),
            ("zonesync_date", 1, sqlite_functions.date_text),
        ):
            raw.create_function(name, arity, function, deterministic=True)
        raw.create_aggregate("zonesync_decimal_sum", 1, sqlite_functions.DecimalSum)

    def decimal_text(self, column: sa.ColumnElement[Any], scale: int) -> sa.ColumnElement[Any]:
        """The stored text (or number) rounded to exactly `scale` decimals."""
        return sa.func.zonesync_decimal(column, scale, type_=sa.String())

    def timestamp_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """Stored ISO text (with or without offset) as the UTC wall clock."""
        return sa.func.zonesync_timestamp(column, type_=sa.String())

    def date_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """Stored ISO date text."""
        return sa.func.zonesync_date(column, type_=sa.String())

    def md5(self, text: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """MD5 of the UTF-8 text, in Python."""
        return sa.func.zonesync_md5(text, type_=sa.String())

    def hash32(self, digest: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """The first 8 hex digits as an integer, in Python."""
        return sa.func.zonesync_hash32(digest, type_=sa.BigInteger())

    def exact_sum(self, column: sa.ColumnElement[Any], dtype: pl.DataType) -> sa.ColumnElement[Any]:
        """Decimals are text here: summed exactly in Python (SQLite's SUM would go through a float)."""
        if isinstance(dtype, pl.Decimal):
            return sa.func.zonesync_decimal_sum(column, type_=sa.String())
        return sa.func.sum(column)

    def moment_bound(self, moment: datetime, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The stored text form without its offset: it sorts right against '...+00:00' text and plain text."""
        return sa.literal(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"), sa.String())

    def date_bound(self, day: date) -> sa.ColumnElement[Any]:
        """ISO date text."""
        return sa.literal(day.isoformat(), sa.String())


class SQLiteInstalling(Installing):
    """SQLite's trigger (AFTER UPDATE: its triggers cannot change NEW); it has no grants."""

    def has_trigger(self, conn: Connection, table: sa.Table, name: str) -> bool:
        found = "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table AND name = :name"
        return conn.execute(sa.text(found), {"table": table.name, "name": name}).first() is not None

    def writers_trigger(self, spec: WritersTrigger) -> list[str]:
        """An AFTER UPDATE trigger (SQLite's cannot change NEW) that updates the row again by its key; that update
        does not fire it again (recursive triggers are off by default). Text compared byte for byte."""
        quote = self.engine.dialect.identifier_preparer.quote
        changed = " OR ".join(f"OLD.{quote(c)} IS NOT NEW.{quote(c)} COLLATE BINARY" for c in spec.watched)
        flag = quote(spec.flag)
        sets = [f"{flag} = CASE WHEN OLD.{flag} AND NEW.{flag} THEN 0 ELSE NEW.{flag} END"]
        if spec.version and spec.version_kind:
            version = quote(spec.version)
            now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
            bumped = {
                "integer": f"OLD.{version} + 1",
                "text_timestamp": f"{now} || '000+00:00'",  # milliseconds, padded to the demo's microseconds
            }.get(spec.version_kind, f"{now} || '000'")
            sets.append(f"{version} = CASE WHEN NEW.{version} IS OLD.{version} THEN {bumped} ELSE NEW.{version} END")
        table = self.engine.dialect.identifier_preparer.format_table(spec.table)
        by_key = " AND ".join(f"{quote(k)} = NEW.{quote(k)}" for k in spec.keys)
        name = quote(spec.name)
        return [
            f"DROP TRIGGER IF EXISTS {name}",
            f"CREATE TRIGGER {name} AFTER UPDATE ON {table} FOR EACH ROW WHEN {changed} "
            f"BEGIN UPDATE {table} SET {', '.join(sets)} WHERE {by_key}; END",
        ]

    utc_now = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'"  # milliseconds, padded to microseconds

    def key_json(self, row: str, spec: DeleteCapture) -> str:
        quote = self.engine.dialect.identifier_preparer.quote
        pairs = ", ".join(f"'{key}', {row}.{quote(key)}" for key in spec.keys)
        return f"json_object({pairs})"

    def version_text(self, column: str, kind: VersionKind) -> str:
        """Timestamps are stored as text already."""
        return f"CAST({column} AS TEXT)"

    def row_trigger(self, name: str, event: str, table: sa.Table, statement: str) -> list[str]:
        quoted = self.engine.dialect.identifier_preparer.quote(name)
        on = self.engine.dialect.identifier_preparer.format_table(table)
        return [f"DROP TRIGGER IF EXISTS {quoted}",
                f"CREATE TRIGGER {quoted} AFTER {event} ON {on} FOR EACH ROW BEGIN {statement}; END"]  # fmt: skip

    def grant_statements(self, grants: Sequence[TableGrant], role: str) -> list[str]:
        """SQLite has no roles: whoever can write the file can do anything to it."""
        return ["-- SQLite has no roles or grants: give only zonesync's user write access to the database files."]


DATABASE = Database(SQLiteDialect, SQLiteReconciling(), SQLiteInstalling)
