"""The update with rollback on every backend: both zones end with the new values, or both with the old ones —
also when the process is killed between the two commits (a real subprocess), after `recover`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.conftest import ZonePair, make_pair
from tests.integration.data import SYNCED_MERCHANT
from tests.integration.helpers import REFUSE_FLAG, create, execute, mapped, seed, source_rows, target_rows
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.push.pusher import push_records
from zonesync.tasks.setup import demo_data
from zonesync.tasks.update.recovery import recover_intents
from zonesync.tasks.update.rollback import update_record
from zonesync.tasks.zones.engines import dialect_for, get_engine

MERCHANT = SYNCED_MERCHANT
KEY = {"merchant_id": 1}


def crash_during_update(fault: str) -> subprocess.CompletedProcess[bytes]:
    """Rename merchant 1 in a real subprocess that dies at the fault point, as a killed process would."""
    script = (
        "from zonesync.schemas.examples import MERCHANTS; from zonesync.tasks.update.rollback import update_record; "
        "update_record(MERCHANTS, {'merchant_id': 1}, {'merchant_name': 'Toko Baru'})"
    )
    return subprocess.run([sys.executable, "-c", script], env=os.environ | {"ZONESYNC_FAULT": fault}, check=False)


def zones_agree(pair: ZonePair) -> dict[str, Any]:
    """Both zones hold the same mapped values and the source is flagged; return the target row."""
    source = source_rows(pair.intranet, MERCHANTS)[(1,)]
    target = target_rows(pair.internet, MERCHANTS)[(1,)]
    assert mapped(source) == target and source["__flag"] is True
    return target


def test_an_update_lands_in_both_zones(synced: ZonePair) -> None:
    result = update_record(MERCHANTS, KEY, {"merchant_name": "Toko Baru", "fee": "3.75"})

    assert (result.status, result.message) == ("success", "updated in both zones")
    row = zones_agree(synced)
    assert (row["name"], row["fee"]) == ("Toko Baru", Decimal("3.75"))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "X"}, "validation"),  # the target model refuses it: checked before anything commits
        ({"fee": "1.234"}, "invalid_value"),  # numeric(18,2) would round it
        ({"merchant_id": 2}, "unknown_column"),  # keys cannot change
        ({"colour": "red"}, "unknown_column"),
    ],
)
def test_a_refused_update_changes_neither_zone(synced: ZonePair, changes: dict[str, Any], reason: str) -> None:
    result = update_record(MERCHANTS, KEY, changes)

    assert (result.status, result.reason) == ("error", reason)
    assert zones_agree(synced)["name"] == "Toko Lama"


def test_an_update_of_a_missing_row_is_not_found(synced: ZonePair) -> None:
    result = update_record(MERCHANTS, {"merchant_id": 404}, {"merchant_name": "Nobody"})

    assert (result.status, result.reason) == ("error", "not_found")


def refusing(backend: str, column: str, value: str) -> str:
    """DDL that makes the merchant table refuse `value` in `column` from now on (a CHECK, a trigger on SQLite)."""
    name = f"no_{value.lower()}"
    if backend == "sqlite":
        return (
            f"CREATE TRIGGER {name} BEFORE UPDATE ON merchant WHEN NEW.{column} = '{value}' "
            f"BEGIN SELECT RAISE(ABORT, '{value.lower()}'); END"
        )
    return f"ALTER TABLE merchant ADD CONSTRAINT {name} CHECK ({column} <> '{value}')"


def test_a_target_failure_rolls_the_source_back(synced: ZonePair) -> None:
    execute(synced.internet, refusing(synced.internet_backend, "name", "Blocked"))

    result = update_record(MERCHANTS, KEY, {"merchant_name": "Blocked"})

    assert result.status == "error" and result.message.startswith("rolled back")
    assert zones_agree(synced)["name"] == "Toko Lama"


def test_a_source_failure_changes_neither_zone_and_leaves_nothing_to_recover(synced: ZonePair) -> None:
    execute(synced.intranet, refusing(synced.intranet_backend, "merchant_name", "Refused"))

    result = update_record(MERCHANTS, KEY, {"merchant_name": "Refused"})

    assert result.status == "error" and result.message.startswith("refused by the source")
    assert zones_agree(synced)["name"] == "Toko Lama"
    assert recover_intents(synced.intranet) == []  # the intent was closed at once, not left for recovery to guess at


def test_an_update_that_would_make_a_row_ineligible_is_refused(demo: ZonePair) -> None:
    payment = demo_data.payments(3).filter(pl.col("payment_id") == 2)  # status 'S'
    seed(demo.internet, "payment", payment, ("payment_id",))

    result = update_record(PAYMENTS, {"payment_id": 2}, {"status": "P"})

    assert (result.status, result.reason) == ("error", "not_eligible")
    assert "status = 'S'" in result.message
    assert source_rows(demo.internet, PAYMENTS)[(2,)]["status"] == "S"
    assert target_rows(demo.intranet, PAYMENTS) == {}


@pytest.mark.parametrize(
    ("fault", "expected_name"),
    [
        ("update:source-written", "Toko Lama"),  # the source update never committed
        ("update:after-target", "Toko Lama"),  # the target has the new values, the source not: it gets the old back
        ("update:committed", "Toko Baru"),  # both committed; only the intent was left open
    ],
)
def test_a_process_killed_between_the_commits_is_repaired_by_recover(
    synced: ZonePair, fault: str, expected_name: str
) -> None:
    killed = crash_during_update(fault)
    assert killed.returncode == 70  # died at the fault point, between two commits

    repaired = recover_intents(get_engine("intranet"))

    assert len(repaired) == 1
    assert zones_agree(synced)["name"] == expected_name
    assert recover_intents(get_engine("intranet")) == []


def require_two_phase(pair: ZonePair) -> None:
    """Both databases can prepare transactions: skipped locally without PostgreSQL's setting, failed in CI."""
    if all(dialect_for(engine).supports_two_phase() for engine in (pair.intranet, pair.internet)):
        return
    message = "PostgreSQL needs max_prepared_transactions > 0 for the two-phase tests (.ci/run sets it)"
    if os.environ.get("ZONESYNC_REQUIRE_ALL_BACKENDS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def two_phase(demo: ZonePair) -> ZonePair:
    """One merchant in both zones, on a pair where both databases can prepare transactions."""
    require_two_phase(demo)
    assert push_records("merchants", [MERCHANT]).status == "success"
    return demo


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_with_two_phase_commit_an_update_lands_in_both_zones_or_neither(two_phase: ZonePair) -> None:
    applied = update_record(MERCHANTS, KEY, {"merchant_name": "Toko Baru"})
    execute(two_phase.internet, refusing(two_phase.internet_backend, "name", "Blocked"))
    refused = update_record(MERCHANTS, KEY, {"merchant_name": "Blocked"})

    assert (applied.status, applied.message) == ("success", "updated in both zones (two-phase commit)")
    assert refused.status == "error" and refused.message.startswith("rolled back")
    assert zones_agree(two_phase)["name"] == "Toko Baru"


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@pytest.mark.parametrize(
    ("fault", "expected_name"), [("update:undecided", "Toko Lama"), ("update:prepared", "Toko Baru")]
)
def test_in_doubt_prepared_transactions_after_a_crash_are_resolved_by_recover(
    two_phase: ZonePair, fault: str, expected_name: str
) -> None:
    killed = crash_during_update(fault)
    assert killed.returncode == 70  # died holding prepared transactions on both sides

    repaired = recover_intents(get_engine("intranet"))

    assert len(repaired) == 1 and "in-doubt" in repaired[0]
    assert zones_agree(two_phase)["name"] == expected_name


@pytest.fixture
def mixed_two_phase(
    servers: Any, tmp_path: Path, use_zones: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ZonePair]:
    """PostgreSQL intranet, MariaDB internet: a prepared transaction on each, one merchant in both zones."""
    pair = make_pair(servers, "postgresql", "mariadb", tmp_path)
    create(pair.intranet, intranet_tables())
    create(pair.internet, internet_tables())
    use_zones(pair, modules="zonesync.schemas.examples")
    require_two_phase(pair)
    assert push_records("merchants", [MERCHANT]).status == "success"
    yield pair
    pair.dispose()


@pytest.mark.parametrize(("fault", "expected_name"), [(None, "Toko Baru"), ("update:undecided", "Toko Lama")])
def test_two_phase_commit_across_postgresql_and_mariadb(
    mixed_two_phase: ZonePair, fault: str | None, expected_name: str
) -> None:
    if fault is None:
        assert update_record(MERCHANTS, KEY, {"merchant_name": "Toko Baru"}).status == "success"
    else:
        assert crash_during_update(fault).returncode == 70
        assert len(recover_intents(get_engine("intranet"))) == 1

    assert zones_agree(mixed_two_phase)["name"] == expected_name


def test_a_source_that_refuses_the_flag_leaves_both_zones_as_they_were(
    synced: ZonePair, caplog: pytest.LogCaptureFixture
) -> None:
    """The flag is set in the same source transaction as the changes, before the target is written: a source
    that refuses it refuses the update, and the target never sees the new values."""
    for statement in REFUSE_FLAG[synced.intranet_backend]:
        execute(synced.intranet, statement)

    result = update_record(MERCHANTS, KEY, {"merchant_name": "Toko Baru"})

    assert (result.status, result.reason) == ("error", "database_error") and "flag refused" not in result.message
    assert "flag refused" in caplog.text  # the database's own words go to the log, not to the caller
    assert target_rows(synced.internet, MERCHANTS)[(1,)]["name"] == "Toko Lama"
    on_table = " ON merchant" if synced.intranet_backend == "postgresql" else ""
    execute(synced.intranet, f"DROP TRIGGER refuse_flag{on_table}")
    assert recover_intents(get_engine("intranet")) == []  # closed as rolled back at once
    source = source_rows(synced.intranet, MERCHANTS)[(1,)]
    assert source["name"] == "Toko Lama" and not source["__flag"]  # unflagged until the cron retry sends it
