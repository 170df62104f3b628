"""Dialect statements compiled offline: engines are created but never connect."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
import pytest
import sqlalchemy as sa

from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.tables import sync_error
from zonesync.tasks.dialects.installing import Installing, TableGrant
from zonesync.tasks.dialects.mariadb import MariaDBDialect
from zonesync.tasks.dialects.postgresql import PostgresDialect
from zonesync.tasks.dialects.sqlite import SQLiteDialect
from zonesync.tasks.dialects.surface import Dialect
from zonesync.tasks.dialects.update_then_insert import bound_rows, update_then_insert
from zonesync.tasks.sync.extract import UnsyncedReader
from zonesync.tasks.zones.engines import dialect_for, installing_for

URLS = {
    "postgresql": "postgresql+psycopg://sync@db/pay",
    "mariadb": "mysql+pymysql://sync@db/pay",
    "sqlite": "sqlite:///never-opened.db",
}
ON_CONFLICT = ("postgresql", "sqlite")


def dialect(name: str) -> Dialect:
    return dialect_for(sa.create_engine(URLS[name]))


def installing(name: str) -> Installing:
    return installing_for(sa.create_engine(URLS[name]))


def sql(name: str, statement: sa.ClauseElement, **kwargs: object) -> str:
    """A statement compiled for one database, whitespace collapsed."""
    compiled = statement.compile(dialect=dialect(name).engine.dialect, **kwargs)  # type: ignore[arg-type]
    return " ".join(str(compiled).split())


def rendered(name: str, statement: sa.ClauseElement) -> str:
    return " ".join(dialect(name).render(statement).split())


def shop_table(*keys: str) -> sa.Table:
    """A target table keyed by `keys` (default: shop_id) with two value columns."""
    key_types: dict[str, sa.types.TypeEngine[Any]] = {"shop_id": sa.BigInteger(), "region": sa.String(8)}
    key_columns: list[sa.Column[Any]] = [
        sa.Column(key, key_types[key], primary_key=True) for key in keys or ("shop_id",)
    ]
    values: list[sa.Column[Any]] = [sa.Column("name", sa.String(100)), sa.Column("fee", sa.Numeric(18, 2))]
    return sa.Table("shop", sa.MetaData(), *key_columns, *values)


def upsert_sql(name: str, *keys: str) -> str:
    target = shop_table(*keys)
    d = dialect(name)
    temp = d.temp_table("zonesync_upsert", target, [column.name for column in target.columns])
    return sql(name, d.upsert_from(target, temp, list(keys or ("shop_id",))))


# -- registry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("postgresql+psycopg://u@h/db", PostgresDialect),
        ("mysql+pymysql://u@h/db", MariaDBDialect),
        ("mariadb+pymysql://u@h/db", MariaDBDialect),
        ("sqlite:///x.db", SQLiteDialect),
    ],
)
def test_dialect_for_picks_the_engine_database(url: str, kind: type[Dialect]) -> None:
    engine = sa.create_engine(url)
    chosen = dialect_for(engine)
    assert type(chosen) is kind
    assert chosen.engine is engine


# -- upserts -------------------------------------------------------------------------------------


def test_postgresql_upsert_updates_only_rows_that_change() -> None:
    statement = upsert_sql("postgresql")
    assert statement.startswith(
        "INSERT INTO shop (shop_id, name, fee) SELECT zonesync_upsert.shop_id, zonesync_upsert.name, "
        "zonesync_upsert.fee FROM zonesync_upsert"
    )
    assert "ON CONFLICT (shop_id) DO UPDATE SET name = excluded.name, fee = excluded.fee" in statement
    assert statement.endswith(
        "WHERE shop.name IS DISTINCT FROM excluded.name OR shop.fee IS DISTINCT FROM excluded.fee"
    )


def test_sqlite_upsert_updates_only_rows_that_change() -> None:
    statement = upsert_sql("sqlite")
    assert "ON CONFLICT (shop_id) DO UPDATE SET name = excluded.name, fee = excluded.fee" in statement
    # text compared byte for byte: a column declared NOCASE must still take a change of case
    assert statement.endswith('WHERE (shop.name COLLATE "BINARY") IS NOT excluded.name OR shop.fee IS NOT excluded.fee')


def test_mariadb_upsert_is_on_duplicate_key_update_never_replace() -> None:
    statement = upsert_sql("mariadb")
    assert statement.startswith("INSERT INTO shop (shop_id, name, fee) SELECT")
    assert statement.endswith("ON DUPLICATE KEY UPDATE name = VALUES(name), fee = VALUES(fee)")
    assert "REPLACE" not in statement.upper()


def test_a_few_rows_on_mariadb_update_the_keys_that_exist_then_insert_the_others_from_bound_values() -> None:
    """No temporary table for a push, and still no ON DUPLICATE KEY UPDATE (it fires on any unique index)."""
    target = shop_table()
    frame = pl.DataFrame({"shop_id": [1, 2], "name": ["a", "b"], "fee": [Decimal("1.50"), None]})
    statements = update_then_insert(target, bound_rows(target, frame), ["shop_id"], MariaDBDialect.same_value)
    update, insert = (sql("mariadb", s) for s in statements)
    rows = (
        "(SELECT %(param_1)s AS shop_id, %(param_2)s AS name, %(param_3)s AS fee UNION ALL "
        "SELECT %(param_4)s AS shop_id, %(param_5)s AS name, %(param_6)s AS fee) AS zonesync_rows"
    )
    assert update == (  # only rows that differ, byte for byte: the row counts add up to the rows changed
        f"UPDATE shop, {rows} SET shop.name=zonesync_rows.name, shop.fee=zonesync_rows.fee "
        "WHERE shop.shop_id = zonesync_rows.shop_id AND (NOT (CAST(shop.name AS BINARY) <=> "
        "CAST(zonesync_rows.name AS BINARY)) OR NOT (shop.fee <=> zonesync_rows.fee))"
    )
    assert insert == (
        "INSERT INTO shop (shop_id, name, fee) SELECT zonesync_rows.shop_id, zonesync_rows.name, zonesync_rows.fee "
        f"FROM {rows} WHERE NOT (EXISTS (SELECT * FROM shop WHERE shop.shop_id = zonesync_rows.shop_id))"
    )


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_upsert_never_overwrites_the_key(name: str) -> None:
    statement = upsert_sql(name)
    update_part = statement.split("UPDATE", 1)[1]
    assert "shop_id =" not in update_part


@pytest.mark.parametrize("name", ON_CONFLICT)
def test_composite_key_upsert_conflicts_on_every_key_column(name: str) -> None:
    statement = upsert_sql(name, "region", "shop_id")
    assert "ON CONFLICT (region, shop_id) DO UPDATE SET name = excluded.name, fee = excluded.fee" in statement


# -- bookkeeping insert-or-update ----------------------------------------------------------------

QUARANTINE_COLUMNS = [
    "mapping", "direction", "record_key", "reason", "detail", "first_seen", "last_seen", "attempts", "resolved_at",
]  # fmt: skip


def quarantine_sql(name: str) -> str:
    statement = dialect(name).insert_or_update(
        sync_error,
        keys=("mapping", "record_key"),
        replace=("reason", "detail", "last_seen", "resolved_at"),
        extra={"attempts": sync_error.c.attempts + sa.literal_column("1")},
    )
    return sql(name, statement, column_keys=QUARANTINE_COLUMNS)


@pytest.mark.parametrize("name", ON_CONFLICT)
def test_insert_or_update_on_conflict(name: str) -> None:
    statement = quarantine_sql(name)
    assert (
        "ON CONFLICT (mapping, record_key) DO UPDATE SET reason = excluded.reason, detail = excluded.detail, "
        "last_seen = excluded.last_seen, attempts = (sync_error.attempts + 1), resolved_at = excluded.resolved_at"
    ) in statement


def test_insert_or_update_on_mariadb() -> None:
    statement = quarantine_sql("mariadb")
    assert statement.endswith(
        "ON DUPLICATE KEY UPDATE reason = VALUES(reason), detail = VALUES(detail), last_seen = VALUES(last_seen), "
        "attempts = (sync_error.attempts + 1), resolved_at = VALUES(resolved_at)"
    )


@pytest.mark.parametrize(("name", "placeholder"), [("postgresql", "%("), ("mariadb", "%("), ("sqlite", "?")])
def test_insert_or_update_binds_every_value_and_keeps_first_seen(name: str, placeholder: str) -> None:
    statement = quarantine_sql(name)
    values, update = statement.split(" VALUES (", 1)[1].split(" ON ", 1)
    assert values.count(placeholder) == len(QUARANTINE_COLUMNS)
    assert "first_seen" not in update


# -- reading -------------------------------------------------------------------------------------

FLAGS = sa.Table("pending", sa.MetaData(), sa.Column("a", sa.Integer), sa.Column("b", sa.String(8)),
                 sa.Column("c", sa.Integer), sa.Column("is_sync", sa.Boolean))  # fmt: skip


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("postgresql", "pending.is_sync IS NOT true"),
        ("mariadb", "pending.is_sync IS NOT true"),
        ("sqlite", "pending.is_sync IS NULL OR pending.is_sync = 0"),
    ],
)
def test_not_synced_counts_null_as_not_synced(name: str, expected: str) -> None:
    assert sql(name, dialect(name).not_synced(FLAGS.c.is_sync)) == expected


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_single_key_keyset_is_a_plain_bound_comparison(name: str) -> None:
    statement = sql(name, dialect(name).keyset_after([FLAGS.c.a], (41,)))
    assert statement in ("pending.a > %(a_1)s", "pending.a > %(a_1)s::INTEGER", "pending.a > ?")


@pytest.mark.parametrize("name", ON_CONFLICT)
def test_composite_keyset_is_a_row_value_comparison(name: str) -> None:
    statement = rendered(name, sa.select(FLAGS.c.a).where(dialect(name).keyset_after([FLAGS.c.a, FLAGS.c.b], (4, "x"))))
    assert statement.endswith("WHERE (pending.a, pending.b) > (4, 'x')")


def test_composite_keyset_on_mariadb_is_expanded() -> None:
    d = dialect("mariadb")
    statement = rendered("mariadb", sa.select(FLAGS.c.a).where(d.keyset_after([FLAGS.c.a, FLAGS.c.b], (4, "x"))))
    assert statement.endswith("WHERE pending.a > 4 OR pending.a = 4 AND pending.b > 'x'")
    assert "(pending.a, pending.b)" not in statement


def test_three_part_keyset_on_mariadb_has_one_branch_per_key() -> None:
    d = dialect("mariadb")
    keys = [FLAGS.c.a, FLAGS.c.b, FLAGS.c.c]
    statement = rendered("mariadb", sa.select(FLAGS.c.a).where(d.keyset_after(keys, (4, "x", 9))))
    assert statement.endswith(
        "WHERE pending.a > 4 OR pending.a = 4 AND pending.b > 'x' "
        "OR pending.a = 4 AND pending.b = 'x' AND pending.c > 9"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("postgresql", "CREATE INDEX ix_pending_is_sync_pending ON pending (a, b) WHERE is_sync IS NOT true;"),
        ("sqlite", "CREATE INDEX ix_pending_is_sync_pending ON pending (a, b) WHERE is_sync IS NULL OR is_sync = 0;"),
        ("mariadb", "CREATE INDEX ix_pending_is_sync_pending ON pending (is_sync, a, b);"),
    ],
)
def test_recommended_index(name: str, expected: str) -> None:
    assert installing(name).recommended_index(FLAGS, ["a", "b"], "is_sync") == expected


def test_recommended_index_name_fits_63_characters() -> None:
    long_table = sa.Table("t" * 60, sa.MetaData(), sa.Column("a", sa.Integer), sa.Column("is_sync", sa.Boolean))
    ddl = installing("postgresql").recommended_index(long_table, ["a"], "is_sync")
    index_name = ddl.split()[2]
    assert len(index_name) == 63
    assert index_name.startswith("ix_ttt")


@pytest.mark.parametrize(("name", "clause"), [("postgresql", "ON COMMIT DROP"), ("mariadb", "")])
def test_temporary_tables(name: str, clause: str) -> None:
    temp = dialect(name).temp_table("zonesync_upsert", shop_table(), ["shop_id", "fee"])
    ddl = sql(name, sa.schema.CreateTable(temp))
    assert ddl.startswith("CREATE TEMPORARY TABLE zonesync_upsert ( shop_id BIGINT, fee NUMERIC(18, 2) )")
    assert ddl.endswith(clause)
    assert "PRIMARY KEY" not in ddl


# -- rendering batch queries for connectorx ------------------------------------------------------


class Voucher(pa.DataFrameModel):
    code: str
    MixedCase: str = pa.Field(nullable=True)
    amount: int


VOUCHERS = SyncMapping(
    name="vouchers",
    direction="intranet_to_internet",
    source_table="order",
    target_table="voucher",
    keys=("code",),
    model=Voucher,
    renames={"select": "code"},
    eligible={"state": "S"},
)
ORDER = sa.Table(
    "order", sa.MetaData(),
    sa.Column("select", sa.String(40), primary_key=True),
    sa.Column("MixedCase", sa.String(40)),
    sa.Column("amount", sa.Integer),
    sa.Column("state", sa.String(1)),
    sa.Column("is_sync", sa.Boolean),
)  # fmt: skip


def batch_sql(name: str, after: tuple[object, ...] | None, limit: int = 500) -> str:
    d = dialect(name)
    return " ".join(d.render(UnsyncedReader(VOUCHERS, d, ORDER).batch_query(after, limit)).split())


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_batch_query_reads_in_key_order_after_the_last_key(name: str) -> None:
    q = "`" if name == "mariadb" else '"'
    statement = batch_sql(name, ("K-100",), 500)
    assert f"FROM {q}order{q}" in statement
    assert f"{q}order{q}.{q}select{q} > 'K-100'" in statement
    assert f"{q}order{q}.state = 'S'" in statement
    assert f"ORDER BY {q}order{q}.{q}select{q}" in statement
    assert "LIMIT 500" in statement


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_identifiers_needing_quotes_are_quoted(name: str) -> None:
    q = "`" if name == "mariadb" else '"'
    statement = batch_sql(name, None)
    assert f"{q}order{q}.{q}select{q} AS {q}select{q}" in statement
    assert f"{q}order{q}.{q}MixedCase{q} AS {q}MixedCase{q}" in statement
    assert " FROM order " not in statement


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_a_quote_in_a_key_value_is_escaped(name: str) -> None:
    statement = batch_sql(name, ("O'Brien",))
    assert "> 'O''Brien'" in statement


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_an_injection_attempt_stays_inside_one_literal(name: str) -> None:
    statement = batch_sql(name, ("x' OR '1'='1'; DROP TABLE merchant; --",))
    assert "> 'x'' OR ''1''=''1''; DROP TABLE merchant; --'" in statement


def test_a_backslash_cannot_escape_the_literal_on_mariadb() -> None:
    # MySQL reads \' as an escaped quote: the backslash itself must be escaped too.
    statement = batch_sql("mariadb", ("a\\' OR 1=1 -- ",))
    assert "> 'a\\\\'' OR 1=1 -- '" in statement


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_percent_signs_are_not_doubled(name: str) -> None:
    statement = batch_sql(name, ("100% off %s %(x)s",))
    assert "> '100% off %s %(x)s'" in statement
    assert "%%" not in statement


class Fee(pa.DataFrameModel):
    shop_id: int
    fee: Annotated[pl.Decimal, 18, 2]
    updated_at: Annotated[pl.Datetime, "us", "UTC"]


FEES = SyncMapping(
    name="fees", direction="intranet_to_internet", source_table="shop", target_table="shop", keys=("shop_id",),
    model=Fee,
)  # fmt: skip
FEE_SOURCE = sa.Table(
    "shop", sa.MetaData(),
    sa.Column("shop_id", sa.BigInteger), sa.Column("fee", sa.String(20)), sa.Column("updated_at", sa.String(40)),
    sa.Column("is_sync", sa.Boolean),
)  # fmt: skip


@pytest.mark.parametrize(("name", "cast"), [("sqlite", True), ("postgresql", False), ("mariadb", False)])
def test_sqlite_reads_decimals_and_timestamps_as_text(name: str, cast: bool) -> None:
    d = dialect(name)
    statement = " ".join(d.render(UnsyncedReader(FEES, d, FEE_SOURCE).batch_query(None, 10)).split())
    assert ("CAST(shop.fee AS TEXT) AS fee" in statement) is cast
    assert ("CAST(shop.updated_at AS TEXT) AS updated_at" in statement) is cast
    assert "shop.shop_id AS shop_id" in statement


# -- encoding for the bulk-load paths ------------------------------------------------------------

BIG = Decimal("1234567890123456.78")
INSTANT = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)


def sample() -> pl.DataFrame:
    """One row of every interesting type (Berlin time, to see the zone handling) and one row of nulls."""
    return pl.DataFrame(
        {
            "id": [1, 2],
            "amount": pl.Series([BIG, None], dtype=pl.Decimal(18, 2)),
            "at_utc": pl.Series([INSTANT, None], dtype=pl.Datetime("us", "UTC")),
            "at_berlin": pl.Series([INSTANT, None]).dt.convert_time_zone("Europe/Berlin"),
            "naive": pl.Series([datetime(2024, 1, 2, 3, 4, 5, 120000), None], dtype=pl.Datetime("us")),
            "active": [True, None],
            "inactive": [False, None],
            "day": [date(2024, 2, 29), None],
            "text": ["Zürich 😀 '\"", None],
        }
    )


def encoded(name: str) -> dict[str, object]:
    return dialect(name).encode(sample()).row(0, named=True)


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_encode_keeps_decimals_exact(name: str) -> None:
    frame = dialect(name).encode(sample())
    assert frame["amount"].cast(pl.String)[0] == "1234567890123456.78"
    assert "1234567890123456.78" in frame.write_csv(include_header=False)


@pytest.mark.parametrize("name", ["postgresql", "sqlite"])
def test_encode_writes_zoned_timestamps_with_their_offset(name: str) -> None:
    row = encoded(name)
    assert row["at_utc"] == "2024-01-02 03:04:05.000006+00:00"
    assert row["at_berlin"] == "2024-01-02 04:04:05.000006+01:00"
    assert row["naive"] == "2024-01-02 03:04:05.120000"


def test_encode_writes_utc_wall_clock_for_mariadb() -> None:
    row = encoded("mariadb")
    assert row["at_utc"] == "2024-01-02 03:04:05.000006"
    assert row["at_berlin"] == "2024-01-02 03:04:05.000006"
    assert row["naive"] == "2024-01-02 03:04:05.120000"


@pytest.mark.parametrize("name", ["mariadb", "sqlite"])
def test_encode_writes_booleans_as_zero_and_one(name: str) -> None:
    row = encoded(name)
    assert (row["active"], row["inactive"]) == (1, 0)


def test_encode_keeps_booleans_for_postgresql_copy() -> None:
    row = encoded("postgresql")
    assert (row["active"], row["inactive"]) == (True, False)


def test_encode_writes_exact_text_for_sqlite() -> None:
    row = encoded("sqlite")
    assert row["amount"] == "1234567890123456.78"
    assert row["day"] == "2024-02-29"


@pytest.mark.parametrize("name", ["postgresql", "mariadb", "sqlite"])
def test_encode_keeps_nulls_and_text(name: str) -> None:
    frame = dialect(name).encode(sample())
    assert set(frame.row(1)) == {2, None}
    assert frame["text"][0] == "Zürich 😀 '\""
    assert frame.columns == sample().columns


def test_sqlite_loads_a_temporary_table_with_one_executemany() -> None:
    """SQLite has no bulk-load command: a batch beyond the bound path would go through `bulk_load` all the same."""
    engine = sa.create_engine("sqlite://")
    frame = pl.DataFrame(
        {"shop_id": [1, 2], "fee": [Decimal("1.50"), None]}, schema={"shop_id": pl.Int64, "fee": pl.Decimal(18, 2)}
    )
    with engine.begin() as conn:
        temp = dialect_for(engine).load_temp(conn, "zonesync_upsert", shop_table(), frame)
        rows = conn.execute(sa.select(temp).order_by(temp.c.shop_id)).all()
    assert [tuple(row) for row in rows] == [(1, Decimal("1.50")), (2, None)]


def test_sqlite_has_no_grants_to_print() -> None:
    assert installing_for(sa.create_engine("sqlite://")).grant_statements([], "zonesync") == [
        "-- SQLite has no roles or grants: give only zonesync's user write access to the database files."
    ]


def test_a_grant_limits_select_and_update_to_columns_and_widens_update_where_upserts_need_it() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("a", sa.Text), sa.Column("b", sa.Text))
    grant = TableGrant(table)
    grant.allow("INSERT", select=("id", "a"), update=("a",), upsert=("id", "a", "b"))

    assert grant.ordered == ["INSERT"]
    assert grant.by_column() == [("SELECT", ["a", "id"]), ("UPDATE", ["a"])]
    assert grant.by_column(upsert_updates_inserted=True) == [("SELECT", ["a", "id"]), ("UPDATE", ["a", "b", "id"])]
    grant.allow("SELECT")
    assert grant.by_column() == [("UPDATE", ["a"])]  # the whole table covers its columns

    mariadb = installing_for(sa.create_engine("mysql+pymysql://u@127.0.0.1/zone"))
    assert mariadb.grant_statements([grant], "api") == [
        "GRANT CREATE TEMPORARY TABLES ON zone.* TO 'api'@'%';",
        "GRANT SELECT, INSERT ON zone.t TO 'api'@'%';",
        "GRANT UPDATE (a, b, id) ON zone.t TO 'api'@'%';",
    ]
