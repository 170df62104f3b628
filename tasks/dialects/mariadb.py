"""MariaDB 10.5+ and MySQL 8 through PyMySQL: how to connect, what its errors mean, rows joined as bound values
(a few) or LOAD DATA LOCAL INFILE into a temporary table (more)."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

import polars as pl
import pymysql
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import BINARY, CHAR, MEDIUMINT, TINYINT
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Connection, Engine

from zonesync.schemas.errors import RefusedValue
from zonesync.tasks.dialects.column_shapes import ColumnShape, integer_range
from zonesync.tasks.dialects.core import UTC_TEXT_FORMAT
from zonesync.tasks.dialects.driver_errors import DriverErrors, LimitReached, RefusedAt, named
from zonesync.tasks.dialects.installing import DeleteCapture, Installing, TableGrant, VersionKind, WritersTrigger
from zonesync.tasks.dialects.mariadb_connecting import MariaDBConnecting
from zonesync.tasks.dialects.reconciling import Reconciling
from zonesync.tasks.dialects.surface import Database, Dialect
from zonesync.tasks.dialects.update_then_insert import UpdateThenInsert

# Read without importing this module (see the package): the names its URLs use, the packages its driver raises.
URL_NAMES = ("mariadb", "mysql")
DRIVER_PACKAGES = ("pymysql",)


_CATALOG_SIGNATURE = sa.text(
    "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_KEY "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table "
    "ORDER BY ORDINAL_POSITION"
)


# A LOAD DATA LOCAL INFILE refused by the server's (or the client's) local_infile setting: MariaDB, MySQL 5, MySQL 8.
LOCAL_INFILE_REFUSED = frozenset({4166, 1148, 3948})
# The engines whose server refused it: a dialect is built per run, an engine lives as long as the process.
_LOAD_DATA_REFUSED: weakref.WeakSet[Engine] = weakref.WeakSet()
logger = logging.getLogger(__name__)

# Where MariaDB's (and MySQL's) messages name the column or the constraint of a refusal, at their end.
_COLUMN = (
    re.compile(r"for column (?:`[^`]*`\.)*[`']([^`']+)[`'] at row \d+$"),  # too long, out of range, incorrect
    re.compile(r"^Column '([^']+)' cannot be null$"),
    re.compile(r"^Field '([^']+)' doesn't have a default value$"),
)
_CONSTRAINT = (
    re.compile(r"for key '([^']+)'$"),  # a duplicate entry: the unique key's name (MySQL: table.key)
    re.compile(r"^CONSTRAINT `([^`]+)` failed for `[^`]*`\.`[^`]*`$"),  # MariaDB's CHECK
    re.compile(r"^Check constraint '([^']+)' is violated\.$"),  # MySQL's CHECK
)


class MariaDBErrors(DriverErrors):
    """Error numbers (PyMySQL's errors are (number, message))."""

    driver_errors = (pymysql.err.Error,)
    # lock wait timeout, deadlock; can't connect (socket, TCP), server gone, lost connection; too many
    # connections, shutdown in progress
    transient_codes = frozenset({1205, 1213, 2002, 2003, 2006, 2013, 1040, 1053})
    deadlock_codes = frozenset({1213})
    lock_timeout_codes = frozenset({1205})
    refusal_codes = {
        "duplicate_key": frozenset({1062, 1022}),
        "missing_required": frozenset({1048, 1364}),
        "invalid_value": frozenset({1406, 1264, 1292, 1366, 3819, 4025}),
    }
    # MariaDB (4025) and MySQL (3819) report a failed CHECK constraint as an OperationalError.
    row_level_codes = frozenset({4025, 3819})

    def code(self, original: BaseException) -> int | None:
        args: tuple[object, ...] = tuple(original.args)
        return args[0] if args and isinstance(args[0], int) else None

    def message(self, original: BaseException) -> str:
        args: tuple[object, ...] = tuple(original.args)
        return args[1] if len(args) > 1 and isinstance(args[1], str) else str(original)

    def refused_at(self, original: BaseException) -> RefusedAt:
        message = self.message(original).strip()
        column = named(_COLUMN, message)
        return RefusedAt((column,) if column else (), named(_CONSTRAINT, message))

    def limit_reached(self, original: BaseException) -> LimitReached | None:
        code = self.code(original)
        if code == 2013 and "timed out" in self.message(original).lower():  # PyMySQL's read timeout
            return "silent"
        if code == 1969:  # max_statement_time exceeded
            return "statement"
        if code == 1205:  # lock wait timeout exceeded
            return "lock"
        return None


class MariaDBDialect(UpdateThenInsert, Dialect):
    """MariaDB's reads, writes (LOAD DATA, then update-then-insert) and checks; MySQL 8 shares them."""

    @property
    def load_data_refused(self) -> bool:
        """The server refused LOAD DATA LOCAL INFILE once: INSERTs from then on, for this engine."""
        return self.engine in _LOAD_DATA_REFUSED

    name: ClassVar[str] = "mariadb"
    connecting = MariaDBConnecting()
    errors = MariaDBErrors()
    text_type: ClassVar[sa.types.TypeEngine[Any]] = sa.CHAR()  # MariaDB casts to CHAR, not TEXT
    supports_partial_index: ClassVar[bool] = False
    returning_reads_inserted_columns: ClassVar[bool] = True  # INSERT ... RETURNING needs SELECT of each one set
    default_fraction_digits = 0  # DATETIME and TIMESTAMP without (n) keep whole seconds

    # -- reading --
    def keyset_after(self, keys: Sequence[sa.ColumnElement[Any]], values: Sequence[Any]) -> sa.ColumnElement[bool]:
        """(a > x) OR (a = x AND b > y) ...: MariaDB does not use an index for row-value comparisons."""
        branches = []
        for position in range(len(keys)):
            equal = [keys[i] == values[i] for i in range(position)]
            branches.append(sa.and_(*equal, keys[position] > values[position]))
        return sa.or_(*branches)

    def key_range(self, table: sa.Table, frame: pl.DataFrame, keys: Sequence[str]) -> sa.ColumnElement[bool]:
        """Single keys only: MariaDB cannot use an index for row-value comparisons anyway."""
        return super().key_range(table, frame, keys) if len(keys) == 1 else sa.true()

    # -- writing --
    def encode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """UTC wall-clock text for timestamps (connections run in UTC); 0/1 for booleans."""
        converted = []
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Datetime):
                column = pl.col(name)
                if dtype.time_zone:
                    column = column.dt.convert_time_zone("UTC")
                converted.append(column.dt.strftime(UTC_TEXT_FORMAT))
            elif dtype == pl.Boolean:
                converted.append(pl.col(name).cast(pl.Int8))
        return frame.with_columns(converted)

    def bulk_load(self, conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
        """LOAD DATA LOCAL INFILE; where the server refuses it (`local_infile = 0`, which `zonesync init` reports),
        multi-row INSERTs from then on: slower, and the batch still lands."""
        if not self.load_data_refused:
            try:
                return self._load_data(conn, table, frame)
            except pymysql.err.Error as exc:  # from the raw cursor: not wrapped by SQLAlchemy
                if self.errors.code(exc) not in LOCAL_INFILE_REFUSED:
                    raise
                _LOAD_DATA_REFUSED.add(self.engine)
                logger.warning("%s refuses LOAD DATA LOCAL INFILE (local_infile = 0): loading batches with "
                               "multi-row INSERTs instead, which is slower", self.label)  # fmt: skip
        conn.execute(table.insert(), frame.to_dicts())

    def _load_data(self, conn: Connection, table: sa.Table, frame: pl.DataFrame) -> None:
        """LOAD DATA LOCAL INFILE; any warning (truncation, bad value) fails the load instead of passing."""
        preparer = conn.dialect.identifier_preparer
        columns = ", ".join(preparer.quote(name) for name in frame.columns)
        handle, path = tempfile.mkstemp(prefix="zonesync-", suffix=".csv")
        try:
            with os.fdopen(handle, "wb") as stream:
                frame.write_csv(stream, include_header=False, null_value="NULL", quote_style="non_numeric")
            command = (
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {preparer.format_table(table)} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                f"LINES TERMINATED BY '\\n' ({columns})"
            )
            raw: Any = conn.connection.dbapi_connection
            with raw.cursor() as cursor:
                cursor.execute(command, (path,))
                warnings = raw.show_warnings()
        finally:
            os.unlink(path)
        if warnings:
            raise RefusedValue(f"bulk load refused a value: {warnings[0][2]}")

    def load_temp(self, conn: Connection, name: str, like: sa.Table, frame: pl.DataFrame) -> sa.Table:
        """Temporary tables live as long as the session: drop any left over, create, load."""
        temp = self.temp_table(name, like, frame.columns)
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {conn.dialect.identifier_preparer.format_table(temp)}")
        temp.create(conn)
        self.bulk_load(conn, temp, self.encode(frame))
        return temp

    def insert(self, table: sa.Table) -> Any:
        """MySQL's INSERT construct."""
        return mysql_insert(table)

    def new_values(self, statement: Any) -> Any:
        """VALUES(col) on MariaDB (it has no `AS new` row alias)."""
        return statement.inserted

    def on_conflict_update(
        self,
        statement: Any,
        keys: Sequence[str],
        set_: dict[str, Any],
        where: sa.ColumnElement[bool] | None = None,
    ) -> sa.Insert:
        """ON DUPLICATE KEY UPDATE (never REPLACE, which deletes and reinserts); unchanged rows cost nothing."""
        return statement.on_duplicate_key_update(set_)

    def bind_form(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Bound rows in MariaDB's terms: UTC wall-clock timestamps, 0/1 booleans."""
        return self.encode(frame)

    def execute_bound(self, conn: Connection, statement: sa.Executable, frame: pl.DataFrame) -> int:
        """Bound rows in MariaDB's terms (`bind_form`)."""
        return super().execute_bound(conn, statement, self.bind_form(frame))

    @staticmethod
    def same_value(column: sa.ColumnElement[Any], value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """Text compared as bytes: MariaDB's collations pad trailing blanks (even utf8mb4_bin) and mostly fold case."""
        if isinstance(column.type, sa.String):
            return sa.cast(column, BINARY()).is_not_distinct_from(sa.cast(value, BINARY()))
        return column.is_not_distinct_from(value)

    # -- exactness --
    def column_shape(self, column: sa.Column[Any]) -> ColumnShape:
        """As SQLAlchemy's types say, with MariaDB's own: DATETIME(fsp), TINYINT and MEDIUMINT, UNSIGNED; CHAR
        gives texts back without trailing blanks; utf8mb3 (the column's, or the table's by default) holds no emoji."""
        shape, sql_type = super().column_shape(column), column.type
        if isinstance(sql_type, sa.DateTime):
            return replace(shape, fraction_digits=getattr(sql_type, "fsp", None) or 0)
        if isinstance(sql_type, sa.Integer):
            return replace(shape, integer_range=_integer_range(sql_type))
        if isinstance(sql_type, sa.String):
            return replace(shape, trims_trailing_blanks=isinstance(sql_type, sa.CHAR),
                           astral=_charset(column) not in ("utf8mb3", "utf8"))  # fmt: skip
        return shape

    def catalog_signature(self, conn: Connection, table: sa.Table) -> tuple[tuple[Any, ...], ...]:
        """information_schema.COLUMNS of the one table (type, nullability, default, character set, collation,
        key): ~0.45 ms."""
        found = conn.execute(_CATALOG_SIGNATURE, {"schema": table.schema, "table": table.name})
        return tuple(tuple(row) for row in found)

    # -- transactions --
    def supports_two_phase(self) -> bool:
        """XA transactions (InnoDB)."""
        return True


class MariaDBReconciling(Reconciling):
    """MariaDB's canonical text: DATE_FORMAT of the UTC wall clock, utf8mb4 bytes, CONCAT, CONV for hashes."""

    def as_text(self, expression: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """utf8mb4 with a binary collation: the bytes PostgreSQL and Python hash, and no mix-of-collations error."""
        return sa.cast(expression, CHAR(charset="utf8mb4")).collate("utf8mb4_bin")

    def timestamp_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """DATE_FORMAT of the stored UTC wall clock (sessions run with time_zone '+00:00')."""
        return sa.func.date_format(column, "%Y-%m-%d %H:%i:%s.%f")

    def date_text(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """DATE_FORMAT(d, '%Y-%m-%d')."""
        return sa.func.date_format(column, "%Y-%m-%d")

    def concat(self, parts: Sequence[sa.ColumnElement[str]]) -> sa.ColumnElement[str]:
        """CONCAT(a, b, ...): one call (`||` is OR here)."""
        return sa.func.concat(*parts, type_=sa.String())

    def hash32(self, digest: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
        """CONV of the first 8 hex digits to an unsigned integer."""
        return sa.cast(sa.func.conv(sa.func.left(digest, 8), 16, 10), sa.BigInteger())

    def moment_bound(self, moment: datetime, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """DATETIME holds the UTC wall clock."""
        return sa.literal(moment.replace(tzinfo=None), sa.DateTime())


class MariaDBInstalling(Installing):
    """MariaDB's trigger (BEFORE UPDATE, text compared as bytes), grants, and the flag-first index."""

    def recommended_index(self, table: sa.Table, keys: Sequence[str], flag_column: str) -> str:
        """MariaDB has no partial indexes: lead with the flag so unsynced rows are one range."""
        index = sa.Index(
            f"ix_{table.name}_{flag_column}_pending"[:63],
            table.c[flag_column],
            *(table.c[key] for key in keys),
        )
        return str(sa.schema.CreateIndex(index).compile(dialect=self.engine.dialect)).strip() + ";"

    def server_warnings(self, conn: Connection) -> list[str]:
        """local_infile = 0: batches are loaded with INSERTs instead of LOAD DATA LOCAL INFILE."""
        if conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar():
            return []
        return ["the server has local_infile = 0: batches of more than 100 rows are loaded with multi-row INSERTs "
                "instead of LOAD DATA LOCAL INFILE, which is slower; SET GLOBAL local_infile = 1 (and local_infile "
                "= 1 in the server's configuration) to load them in bulk"]  # fmt: skip

    def has_trigger(self, conn: Connection, table: sa.Table, name: str) -> bool:
        found = ("SELECT 1 FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = COALESCE(:schema, DATABASE()) "
                 "AND EVENT_OBJECT_TABLE = :table AND TRIGGER_NAME = :name")  # fmt: skip
        return (
            conn.execute(sa.text(found), {"schema": table.schema, "table": table.name, "name": name}).first()
            is not None
        )

    def writers_trigger(self, spec: WritersTrigger) -> list[str]:
        """A BEFORE UPDATE trigger that corrects NEW; text compared as bytes (collations call 'a ' and 'A' equal)."""
        quote = self.engine.dialect.identifier_preparer.quote
        string = {c for c in spec.watched if isinstance(spec.table.c[c].type, sa.String)}
        changed = " OR ".join(
            f"NOT (BINARY OLD.{quote(c)} <=> BINARY NEW.{quote(c)})" if c in string
            else f"NOT (OLD.{quote(c)} <=> NEW.{quote(c)})"
            for c in spec.watched
        )  # fmt: skip
        flag = quote(spec.flag)
        body = [f"IF OLD.{flag} AND NEW.{flag} THEN SET NEW.{flag} = 0; END IF;"]
        if spec.version and spec.version_kind:
            version = quote(spec.version)
            bumped = {
                "integer": f"OLD.{version} + 1",
                "text_timestamp": "CONCAT(DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f'), '+00:00')",
            }.get(spec.version_kind, f"GREATEST(UTC_TIMESTAMP(6), OLD.{version} + INTERVAL 1 MICROSECOND)")
            body.append(f"IF NEW.{version} <=> OLD.{version} THEN SET NEW.{version} = {bumped}; END IF;")
        table = self.engine.dialect.identifier_preparer.format_table(spec.table)
        name = quote(spec.name)
        return [
            f"DROP TRIGGER IF EXISTS {name}",
            f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW BEGIN IF {changed} THEN "
            f"{' '.join(body)} END IF; END",
        ]

    utc_now = "UTC_TIMESTAMP(6)"

    def key_json(self, row: str, spec: DeleteCapture) -> str:
        quote = self.engine.dialect.identifier_preparer.quote
        pairs = ", ".join(f"'{key}', {row}.{quote(key)}" for key in spec.keys)
        return f"JSON_OBJECT({pairs})"

    def version_text(self, column: str, kind: VersionKind) -> str:
        """DATETIME holds the UTC wall clock; as text it keeps its declared fraction digits."""
        return f"CAST({column} AS CHAR)"

    def row_trigger(self, name: str, event: str, table: sa.Table, statement: str) -> list[str]:
        quoted = self.engine.dialect.identifier_preparer.quote(name)
        on = self.engine.dialect.identifier_preparer.format_table(table)
        return [f"DROP TRIGGER IF EXISTS {quoted}",
                f"CREATE TRIGGER {quoted} AFTER {event} ON {on} FOR EACH ROW {statement}"]  # fmt: skip

    def grant_statements(self, grants: Sequence[TableGrant], role: str) -> list[str]:
        """Table and column privileges in the zone's database, and CREATE TEMPORARY TABLES (bulk loads go through
        temporary tables; a session may do anything with those it made). `role`: a user, 'name' or 'name'@'host'."""
        quote = self.engine.dialect.identifier_preparer.quote
        who = role if "@" in role else f"'{role.replace(chr(39), '')}'@'%'"
        database = quote(self.engine.url.database or "")
        statements = [f"GRANT CREATE TEMPORARY TABLES ON {database}.* TO {who};"]
        for grant in grants:
            table = f"{database}.{quote(grant.table.name)}"
            if grant.ordered:
                statements.append(f"GRANT {', '.join(grant.ordered)} ON {table} TO {who};")
            for privilege, columns in grant.by_column(upsert_updates_inserted=True):
                statements.append(f"GRANT {privilege} ({', '.join(map(quote, columns))}) ON {table} TO {who};")
        return statements


def _integer_range(sql_type: sa.types.TypeEngine[Any]) -> tuple[int, int] | None:
    bits = 8 if isinstance(sql_type, TINYINT) else 24 if isinstance(sql_type, MEDIUMINT) else None
    return integer_range(sql_type, unsigned=bool(getattr(sql_type, "unsigned", False)), bits=bits)


def _charset(column: sa.Column[Any]) -> str | None:
    """A text column's character set: its own, its collation's, or its table's default."""
    charset, collation = getattr(column.type, "charset", None), getattr(column.type, "collation", None)
    if charset is None and collation:
        charset = collation.split("_", 1)[0]
    if charset is None and isinstance(column.table, sa.Table):  # reflected under the URL's name: mysql or mariadb
        options = column.table.dialect_kwargs
        charset = options.get("mysql_default charset") or options.get("mariadb_default charset")
    return charset if isinstance(charset, str) else None


DATABASE = Database(MariaDBDialect, MariaDBReconciling(), MariaDBInstalling)
