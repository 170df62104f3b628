"""Hostile input on the data path, every backend: each bad value is refused precisely (its own request only,
before anything is written) and no value is ever stored altered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.conftest import ThrowawayServers, ZonePair, make_pair
from tests.integration.data import SYNCED_MERCHANT
from tests.integration.helpers import create, execute, mapped, rows, seed, source_rows, sync, target_rows
from tests.integration.mappings import EXACT_VALUES
from tests.integration.tables import source_tables, target_tables
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.registry import get_mapping
from zonesync.tasks.push.pusher import Pusher, push_records
from zonesync.tasks.setup.inspection import check_mapping
from zonesync.tasks.update.rollback import update_record
from zonesync.tasks.zones.engines import get_engine

BAD_TIMESTAMPS = [
    "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
    "9999-12-31T23:59:59-14:00",  # after year 9999 once in UTC
    "2026-11-26T10:00:00.1234567Z",  # more digits than a microsecond
    "2026-02-30T10:00:00Z",
]


def merchant(key: int, **changes: Any) -> dict[str, Any]:
    return {**SYNCED_MERCHANT, "merchant_id": key, "email": f"m{key}@example.com", **changes}


@pytest.mark.parametrize(
    "bad",
    [{"updated_at": BAD_TIMESTAMPS[0]}, {"merchant_id": Decimal("1.5")}, {"fee": Decimal("1e999999")},
     {"merchant_id": 10**30}, {"merchant_name": None}],
    ids=["overflowing-timestamp", "fractional-key", "huge-exponent", "huge-key", "null-in-not-null"],
)  # fmt: skip
def test_a_bad_request_written_together_with_good_ones_fails_only_itself(demo: ZonePair, bad: dict[str, Any]) -> None:
    good = [[merchant(key)] for key in range(1, 11)]

    results = Pusher(MERCHANTS).push_many([*good[:5], [merchant(99, **bad)], *good[5:]])

    assert [r.status for r in results] == ["success"] * 5 + ["error"] + ["success"] * 5
    assert results[5].reason in {"invalid_value", "missing_required"}, results[5]
    assert set(target_rows(demo.internet, MERCHANTS)) == {(key,) for key in range(1, 11)}
    assert len(rows(demo.intranet, "merchant")) == 10


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
def test_a_timestamp_that_cannot_be_stored_exactly_is_refused(demo: ZonePair, timestamp: str) -> None:
    result = push_records("merchants", [merchant(1, updated_at=timestamp)])

    assert (result.status, result.reason) == ("error", "invalid_value"), result
    assert "updated_at" in result.message
    assert rows(demo.intranet, "merchant") == [] and rows(demo.internet, "merchant") == []


@pytest.mark.parametrize("timestamp", BAD_TIMESTAMPS)
def test_an_update_to_a_timestamp_that_cannot_be_stored_is_refused(synced: ZonePair, timestamp: str) -> None:
    result = update_record(MERCHANTS, {"merchant_id": 1}, {"updated_at": timestamp})

    assert (result.status, result.reason) == ("error", "invalid_value"), result
    assert target_rows(synced.internet, MERCHANTS)[(1,)]["updated_at"].year == 2026


def test_a_column_that_is_null_can_be_updated(synced: ZonePair) -> None:
    assert push_records("merchants", [merchant(2, email=None, tax_id=None)]).status == "success"

    result = update_record(MERCHANTS, {"merchant_id": 2}, {"email": "new@example.com"})

    assert result.status == "success", result
    source = source_rows(synced.intranet, MERCHANTS)[(2,)]
    assert (source["email"], source["__flag"]) == ("new@example.com", True)
    assert target_rows(synced.internet, MERCHANTS)[(2,)] == mapped(source)


def test_an_update_never_reads_or_changes_a_column_that_stays_in_its_zone(synced: ZonePair) -> None:
    """tax_id is not carried: zonesync's roles may not read or change it, so an update of it is refused whole."""
    result = update_record(MERCHANTS, {"merchant_id": 1}, {"email": "new@example.com", "tax_id": "NPWP-2"})

    assert (result.status, result.reason) == ("error", "unknown_column"), result
    assert "'tax_id' stay in the intranet zone" in result.message
    assert source_rows(synced.intranet, MERCHANTS)[(1,)]["email"] != "new@example.com"


# A database's own phrasing. The names it gives (a column, a constraint such as merchant_pkey) are said, in
# zonesync's words; a value never is.
DATABASE_WORDS = ("constraint failed", "violates", "duplicate entry", "for key", "sqlstate", "m1@example.com")


def test_refusals_say_why_in_zonesync_words_with_a_code(demo: ZonePair) -> None:
    assert push_records("merchants", [merchant(1)]).status == "success"

    again = push_records(
        "merchants", [merchant(1, status="I")]
    )  # the key holds other values (identical: already there)
    same_email = push_records("merchants", [merchant(2, email="m1@example.com")])  # a unique index of the target

    assert (again.status, again.reason) == ("error", "duplicate_key")
    assert (same_email.status, same_email.outcomes[0].reason) == ("pending", "constraint")
    for text in (again.message, *(o.detail for o in again.outcomes), same_email.outcomes[0].detail):
        assert text and not any(word in text.lower() for word in DATABASE_WORDS), text
    named = {"postgresql": " of column 'merchant_id' (constraint 'merchant_pkey')",
             "sqlite": " of column 'merchant_id'",
             "mariadb": " (constraint 'PRIMARY')"}  # MariaDB names the key, not its columns  # fmt: skip
    assert f"another row has the same value{named[demo.intranet_backend]}" in again.message, again.message


# -- SQLite columns of NUMERIC affinity keep 15 significant digits --------------------------------------------
NUMERIC_SOURCE = """CREATE TABLE zs_exact_src (item_id INTEGER PRIMARY KEY, amount NUMERIC, happened_at TEXT,
    label TEXT, active BOOLEAN, day DATE, quantity BIGINT, revision INTEGER NOT NULL DEFAULT 1, is_sync BOOLEAN)"""
NUMERIC_TARGET = """CREATE TABLE zs_exact (item_id INTEGER PRIMARY KEY, amount NUMERIC(18, 2), happened_at TEXT,
    label TEXT, active BOOLEAN, day DATE, quantity BIGINT)"""


@pytest.fixture
def sqlite_zones(servers: ThrowawayServers, tmp_path: Path) -> Iterator[ZonePair]:
    """Both zones on SQLite (the embedded default)."""
    pair = make_pair(servers, "sqlite", "sqlite", tmp_path)
    yield pair
    pair.dispose()


def test_sqlite_numeric_source_refuses_a_decimal_it_would_round(
    sqlite_zones: ZonePair, use_zones: Callable[..., None]
) -> None:
    zones = sqlite_zones
    execute(zones.intranet, NUMERIC_SOURCE)
    create(zones.internet, target_tables(), "zs_exact")
    use_zones(zones)

    refused = push_records("exact_values", [{"item_id": 1, "amount": "1234567890123456.78"}])
    kept = push_records("exact_values", [{"item_id": 2, "amount": "123456789012.34"}, {"item_id": 3, "amount": 7}])

    assert (refused.status, refused.reason) == ("error", "invalid_value"), refused
    assert "15 significant digits" in refused.message
    assert kept.status == "success", kept
    with zones.intranet.connect() as conn:
        stored = dict(conn.exec_driver_sql("SELECT item_id, CAST(amount AS TEXT) FROM zs_exact_src").all())
    assert stored == {2: "123456789012.34", 3: "7"}
    assert {row["item_id"]: row["amount"] for row in rows(zones.internet, "zs_exact")} == {
        2: "123456789012.34", 3: "7.00"
    }  # fmt: skip


def test_sqlite_numeric_target_quarantines_a_decimal_it_would_round(sqlite_zones: ZonePair) -> None:
    zones = sqlite_zones
    create(zones.intranet, source_tables(), "zs_exact_src")
    execute(zones.internet, NUMERIC_TARGET)

    frame = pl.DataFrame(
        {"item_id": [1, 2], "amount": ["9999999999999999.99", "12345.67"], "revision": [1, 1], "is_sync": False}
    )
    seed(zones.intranet, "zs_exact_src", frame, ("item_id",))

    result = sync(EXACT_VALUES, zones.intranet, zones.internet, zones.intranet, batch_size=100)

    assert (result.upserted, result.quarantined) == (1, 1)
    assert {r["item_id"]: str(r["amount"]) for r in rows(zones.internet, "zs_exact")} == {2: "12345.67"}


def test_init_warns_about_sqlite_numeric_columns_with_the_fix(
    sqlite_zones: ZonePair, use_zones: Callable[..., None]
) -> None:
    zones = sqlite_zones
    execute(zones.intranet, NUMERIC_SOURCE)
    execute(zones.internet, NUMERIC_TARGET)
    use_zones(zones)

    check = check_mapping(get_mapping("exact_values"), get_engine("intranet"), get_engine("internet"))

    found = [w for w in check.warnings if "amount" in w]
    assert len(found) == 2 and all("15 significant digits" in w and "TEXT" in w for w in found), check.warnings
