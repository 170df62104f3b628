"""Every read and write in UTC, whatever the server's own time zone: instants carried exactly both ways.

The shared servers run in UTC and are never reconfigured, so this module starts private servers of its own
whose default time zone is not UTC: a MariaDB with `default-time-zone=+07:00` and a PostgreSQL with
`timezone = 'Asia/Jakarta'`. The demo's instants are declared `TIMESTAMP(6)` on MariaDB (which a session reads
in its time zone) as well as `DATETIME(6)`, and carried in both directions: payments MariaDB → PostgreSQL,
merchants PostgreSQL → MariaDB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from tests.conftest import ZonePair
from tests.integration.helpers import assert_nothing_lost, execute, seed, sync, target_rows
from tests.torture.clusters import PrivateMariaDB, PrivatePostgres
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.bookkeeping.tables import create_bookkeeping
from zonesync.tasks.reconcile.compare import reconcile_mapping
from zonesync.tasks.setup import demo_data

pytestmark = [pytest.mark.backend("postgresql"), pytest.mark.backend("mariadb")]

T0 = datetime(2026, 11, 25, 23, 30, 0, 123456, tzinfo=UTC)  # 06:30 the next day at +07:00: a date boundary


@pytest.fixture(scope="module")
def servers_off_utc() -> Iterator[tuple[PrivatePostgres, PrivateMariaDB]]:
    """A private PostgreSQL (Asia/Jakarta) and MariaDB (+07:00), started for this module and stopped after it."""
    postgres, mariadb = PrivatePostgres(), PrivateMariaDB("--default-time-zone=+07:00")
    with open(postgres.data / "postgresql.conf", "a") as conf:
        conf.write("timezone = 'Asia/Jakarta'\n")
    try:
        postgres.start()
        mariadb.start()
        yield postgres, mariadb
    finally:
        postgres.close()
        mariadb.close()


@pytest.fixture
def zones_off_utc(
    servers_off_utc: tuple[PrivatePostgres, PrivateMariaDB], use_zones: Callable[..., None]
) -> Iterator[ZonePair]:
    """Intranet on the private PostgreSQL, internet on the private MariaDB, the demo tables in both, with every
    instant of the internet zone a TIMESTAMP(6)."""
    postgres, mariadb = servers_off_utc
    pair = ZonePair("postgresql", "mariadb", postgres.fresh_database("tz_intranet"),
                    mariadb.fresh_database("tz_internet"), ())  # fmt: skip
    create_bookkeeping(pair.intranet)
    intranet_tables().create_all(pair.intranet)
    internet_tables().create_all(pair.internet)
    for table in ("payment", "merchant"):
        for column in ("created_at", "updated_at") if table == "payment" else ("updated_at",):
            execute(pair.internet, f"ALTER TABLE {table} MODIFY {column} TIMESTAMP(6) NULL")
    use_zones(pair, modules="zonesync.schemas.examples")
    yield pair
    pair.dispose()


def test_the_servers_really_are_off_utc(zones_off_utc: ZonePair) -> None:
    from sqlalchemy import text

    with zones_off_utc.internet.connect() as conn:
        assert conn.execute(text("SELECT @@global.time_zone")).scalar_one() == "+07:00"
    with zones_off_utc.intranet.connect() as conn:
        assert conn.execute(text("SELECT current_setting('timezone', true)")).scalar_one() == "UTC"  # zonesync's own
        server_default = "SELECT setting FROM pg_file_settings WHERE name = 'timezone' AND applied"
        assert conn.execute(text(server_default)).scalar_one() == "Asia/Jakarta"


def test_payments_from_timestamp_columns_of_a_plus_seven_mariadb_arrive_at_the_same_instant(
    zones_off_utc: ZonePair,
) -> None:
    payments = demo_data.payments(12).filter(~pl.col("payment_id").is_in(list(demo_data.INVALID_PAYMENTS)))
    payments = payments.with_columns(
        pl.lit("S").alias("status"), pl.lit(Decimal("10.00")).cast(pl.Decimal(18, 2)).alias("amount"),
        pl.Series("created_at", [T0 + timedelta(minutes=i, microseconds=i) for i in range(10)]),
        pl.Series("updated_at", [T0 + timedelta(hours=1, microseconds=i) for i in range(10)]),
    )  # fmt: skip
    seed(zones_off_utc.internet, "payment", payments, ["payment_id"])
    keys = {(key,) for key in payments["payment_id"]}

    result = sync(PAYMENTS, zones_off_utc.internet, zones_off_utc.intranet, zones_off_utc.intranet, batch_size=100)

    assert (result.flagged, result.changed_in_flight, result.quarantined) == (10, 0, 0), result.message
    synced, _ = assert_nothing_lost(PAYMENTS, zones_off_utc.internet, zones_off_utc.intranet,
                                    zones_off_utc.intranet, keys)  # fmt: skip
    assert synced == keys
    landed = target_rows(zones_off_utc.intranet, PAYMENTS)
    assert [landed[(key,)]["created_at"] for key in payments["payment_id"]] == payments["created_at"].to_list()
    # Both business dates of the batch (23:30 UTC and after midnight) agree in both zones, in UTC and in Jakarta.
    for day, timezone in ((T0.date(), "UTC"), (T0.date() + timedelta(days=1), "Asia/Jakarta")):
        found = reconcile_mapping(PAYMENTS, day, zones_off_utc.internet, zones_off_utc.intranet, timezone=timezone)
        assert found.ok and sum(group.source_rows for group in found.groups) > 0, found.headline()


def test_merchants_into_timestamp_columns_of_a_plus_seven_mariadb_keep_their_instant(zones_off_utc: ZonePair) -> None:
    merchants = demo_data.merchants(30).filter(~pl.col("merchant_id").is_in(list(demo_data.INVALID_MERCHANTS)))
    seed(zones_off_utc.intranet, "merchant", merchants, ["merchant_id"])
    keys = {(key,) for key in merchants["merchant_id"]}

    result = sync(MERCHANTS, zones_off_utc.intranet, zones_off_utc.internet, zones_off_utc.intranet, batch_size=100)

    assert result.flagged == len(keys), result.message
    synced, _ = assert_nothing_lost(MERCHANTS, zones_off_utc.intranet, zones_off_utc.internet,
                                    zones_off_utc.intranet, keys)  # fmt: skip
    assert synced == keys
    landed = target_rows(zones_off_utc.internet, MERCHANTS)
    assert [landed[(key,)]["updated_at"] for key in merchants["merchant_id"]] == merchants["updated_at"].to_list()
