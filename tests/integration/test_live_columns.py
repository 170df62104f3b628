"""Values are checked against the live columns, not the model: a column narrower than the model (a DBA's ALTER, a
target created with a smaller scale) never gets a value it would round, pad or cut; the row is quarantined as
type_loss (or the push refused) with the live type named, and no row is flagged whose two zones differ."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import (
    assert_nothing_lost,
    errors_by_key,
    execute,
    seed,
    source_rows,
    sync,
    target_rows,
)
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.push.pusher import push_records
from zonesync.tasks.schema.contract import accept_live
from zonesync.tasks.setup import demo_data
from zonesync.tasks.update.rollback import update_record

SERVERS = [backend_param("postgresql"), backend_param("mariadb")]
FEE = pl.Decimal(18, 2)

# (ALTER on the internet zone's merchant table, what must not fit, how the live type is spelled in the reason)
NARROWED = {
    "postgresql": [
        ("ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,1)", "fee", "numeric(18, 1)"),
        ("ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,0)", "fee", "numeric(18, 0)"),
        ("ALTER TABLE merchant ALTER COLUMN updated_at TYPE timestamptz(0)", "updated_at", "timestamp(0) with"),
        ("ALTER TABLE merchant ALTER COLUMN status TYPE char(3)", "status", "char(3)"),
    ],
    "mariadb": [
        ("ALTER TABLE merchant MODIFY fee decimal(18,1) NOT NULL", "fee", "decimal(18, 1)"),
        ("ALTER TABLE merchant MODIFY fee decimal(18,0) NOT NULL", "fee", "decimal(18, 0)"),
        ("ALTER TABLE merchant MODIFY updated_at datetime NOT NULL", "updated_at", "datetime"),
        ("ALTER TABLE merchant MODIFY updated_at datetime(3) NOT NULL", "updated_at", "datetime(3)"),
        ("ALTER TABLE merchant MODIFY name char(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL", "name",
         "char(100)"),
    ],
}  # fmt: skip
CASES = [
    pytest.param(backend, alter, column, spelled, id=f"{backend}-{alter.split(' ', 5)[-1][:40]}",
                 marks=backend_param(backend).marks)
    for backend in ("postgresql", "mariadb")
    for alter, column, spelled in NARROWED[backend]
]  # fmt: skip


def merchants(count: int) -> pl.DataFrame:
    """Valid merchants whose even rows fit every narrowed column and whose odd rows fit none of them: fees with a
    cent (1.15), timestamps with microseconds, names with a trailing blank."""
    frame = demo_data.merchants(count).filter(~pl.col("merchant_id").is_in(list(demo_data.INVALID_MERCHANTS)))
    odd = pl.col("merchant_id") % 2 == 1
    return frame.with_columns(
        pl.when(odd).then(pl.lit(Decimal("1.15"))).otherwise(pl.lit(Decimal("3.00"))).cast(FEE).alias("fee"),
        pl.when(odd)
        .then(pl.lit(demo_data.BASE_TIME + timedelta(microseconds=1)))
        .otherwise(pl.lit(demo_data.BASE_TIME.replace(microsecond=0)))
        .alias("updated_at"),
        pl.when(odd).then(pl.lit("Toko ")).otherwise(pl.lit("Toko")).alias("merchant_name"),
        pl.when(odd).then(pl.lit("A")).otherwise(pl.lit("I")).alias("status"),
    )  # fmt: skip


def odd_keys(frame: pl.DataFrame) -> set[tuple[int]]:
    return {(key,) for key in frame["merchant_id"] if key % 2 == 1}


@pytest.mark.parametrize("count", [20, 150], ids=["bound", "bulk"])  # 150: COPY / LOAD DATA into a temporary table
@pytest.mark.parametrize(("backend", "alter", "column", "spelled"), CASES, indirect=["backend"])
def test_the_retry_quarantines_values_a_narrowed_target_column_would_alter(
    demo: ZonePair, alter: str, column: str, spelled: str, count: int
) -> None:
    execute(demo.internet, alter)
    rows = merchants(count)
    seed(demo.intranet, "merchant", rows, ["merchant_id"])
    keys = {(key,) for key in rows["merchant_id"]}

    result = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=1000)

    synced, quarantined = assert_nothing_lost(MERCHANTS, demo.intranet, demo.internet, demo.intranet, keys)
    altered = keys if column == "status" else odd_keys(rows)  # char(3) pads both 'A' and 'I'
    assert quarantined == altered, f"{len(quarantined)} quarantined, {len(altered)} expected"
    assert synced == keys - altered
    for error in errors_by_key(demo.intranet, MERCHANTS).values():
        assert error["reason"] == "type_loss"
        assert f"column '{column}': the live column {spelled}" in error["detail"]
    assert result.quarantined == len(altered) and result.flagged == len(keys - altered)


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_push_of_a_value_the_target_column_would_round_is_pending_and_never_rounded(demo: ZonePair) -> None:
    narrower = {"postgresql": "ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,1)",
                "mariadb": "ALTER TABLE merchant MODIFY fee decimal(18,1) NOT NULL"}  # fmt: skip
    execute(demo.internet, narrower[demo.internet_backend])
    record = {**demo_data.NEW_MERCHANT, "fee": "5.55"}

    result = push_records("merchants", [record])

    assert result.status == "pending" and result.reason == "type_loss"
    assert "numeric(18, 1)" in result.outcomes[0].detail or "decimal(18, 1)" in result.outcomes[0].detail
    assert_nothing_lost(MERCHANTS, demo.intranet, demo.internet, demo.intranet, [(501,)])
    assert not source_rows(demo.intranet, MERCHANTS)[(501,)]["__flag"]


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_push_into_a_narrower_source_column_is_refused_naming_it(
    demo: ZonePair, use_zones: Callable[..., None]
) -> None:
    narrower = {"postgresql": "ALTER TABLE merchant ALTER COLUMN updated_at TYPE timestamptz(3)",
                "mariadb": "ALTER TABLE merchant MODIFY updated_at datetime(3) NOT NULL"}  # fmt: skip
    execute(demo.intranet, narrower[demo.intranet_backend])

    result = push_records("merchants", [demo_data.NEW_MERCHANT])  # updated_at has microseconds

    assert result.status == "error" and result.stage == "source" and result.reason == "invalid_value"
    assert "column 'updated_at'" in result.message and "keeps 3 digit(s) of a second" in result.message
    assert source_rows(demo.intranet, MERCHANTS) == {}


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_an_update_the_target_column_would_round_is_rolled_back_naming_it(demo: ZonePair) -> None:
    rows = merchants(4).filter(pl.col("merchant_id") == 2)
    seed(demo.intranet, "merchant", rows, ["merchant_id"])
    assert sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=100).flagged == 1
    narrower = {"postgresql": "ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,1)",
                "mariadb": "ALTER TABLE merchant MODIFY fee decimal(18,1) NOT NULL"}  # fmt: skip
    execute(demo.internet, narrower[demo.internet_backend])
    accept_live(MERCHANTS, demo.intranet, demo.intranet, demo.internet, by="a test")  # a breaking change until then

    result = update_record(MERCHANTS, {"merchant_id": 2}, {"fee": "4.05"})

    assert result.status == "error" and result.reason == "type_loss"
    assert "column 'fee': the live column" in result.message and "keeps 1 digit(s) after the point" in result.message
    assert source_rows(demo.intranet, MERCHANTS)[(2,)]["fee"] == Decimal("3.00")  # nothing changed in either zone
    assert target_rows(demo.internet, MERCHANTS)[(2,)]["fee"] == Decimal("3.00")
