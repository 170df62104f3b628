"""The schema contract: the accepted shape of a mapping's tables, held at each run's start and before each commit.

A breaking change (a mapped column narrowed, renamed or dropped) stops the mapping before any row is written or
flagged, with one line naming zone, table, column, old and new; it runs again once the change is undone or
accepted. A compatible change is accepted and the run goes on. A change made during a run rolls the batch in
flight back. Never is a row flagged whose two zones differ, and a schema break is never a quarantine of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import polars as pl
import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import assert_nothing_lost, errors, execute, seed, source_rows, sync, target_rows
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.schema.contract import FIRST_SEEN, accept_live, schema_report
from zonesync.tasks.setup import demo_data
from zonesync.tasks.zones.checkpoints import interleaved
from zonesync.tasks.zones.engines import get_engine

SERVERS = [backend_param("postgresql"), backend_param("mariadb")]
NARROW_FEE = {
    "postgresql": "ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,1)",
    "mariadb": "ALTER TABLE merchant MODIFY fee decimal(18,1) NOT NULL",
}
FEE = pl.Decimal(18, 2)


def merchants(ids: range) -> pl.DataFrame:
    """Valid merchants; odd ids have a fee with a cent (1.15: it does not fit numeric(18,1)), even ids 3.00."""
    frame = demo_data.merchants(max(ids)).filter(pl.col("merchant_id").is_in(list(ids)))
    frame = frame.filter(~pl.col("merchant_id").is_in(list(demo_data.INVALID_MERCHANTS)))
    odd = pl.col("merchant_id") % 2 == 1
    return frame.with_columns(pl.when(odd).then(pl.lit(Decimal("1.15"))).otherwise(pl.lit(Decimal("3.00"))).cast(FEE)
                              .alias("fee"))  # fmt: skip


def keys_of(frame: pl.DataFrame) -> set[tuple[int]]:
    return {(key,) for key in frame["merchant_id"]}


def run(demo: ZonePair, batch_size: int = 1000):  # type: ignore[no-untyped-def]
    return sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=batch_size)


def report(demo: ZonePair):  # type: ignore[no-untyped-def]
    return schema_report(MERCHANTS, demo.intranet, demo.intranet, demo.internet)


@pytest.fixture
def synced_once(demo: ZonePair) -> Iterator[ZonePair]:
    """Merchants 1-10 synced by a first run, which accepted the tables as they were."""
    seed(demo.intranet, "merchant", merchants(range(1, 11)), ["merchant_id"])
    assert run(demo).status == "success"
    yield demo


def test_the_first_run_accepts_the_tables_as_it_finds_them(synced_once: ZonePair) -> None:
    found = report(synced_once)
    assert found.state == "ok" and found.accepted is not None
    assert (found.accepted.accepted_by, found.accepted.note) == ("zonesync", FIRST_SEEN)


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_narrowed_target_column_stops_the_mapping_until_the_change_is_accepted(synced_once: ZonePair) -> None:
    demo = synced_once
    execute(demo.internet, NARROW_FEE[demo.internet_backend])
    later = merchants(range(11, 21))
    seed(demo.intranet, "merchant", later, ["merchant_id"])

    stopped = run(demo)

    assert stopped.status == "error" and stopped.flagged == 0 and stopped.read == 0
    line = stopped.message
    assert "schema change: internet zone, table 'merchant', column 'fee': " in line, line
    assert " -> " in line and "(fewer digits after the point)" in line and "zonesync schema accept merchants" in line
    assert "\n" not in line
    assert not keys_of(later) & set(target_rows(demo.internet, MERCHANTS)), "a row reached the changed target"
    assert not any(source_rows(demo.intranet, MERCHANTS)[key]["__flag"] for key in keys_of(later))
    assert errors(demo.intranet) == [], "a schema break became a quarantine of rows"
    assert report(demo).state == "1 breaking change(s)"

    # The ALTER rounded the fees the target held (1.15 -> 1.2): accepting it marks the synced rows unsynced.
    accepted = accept_live(MERCHANTS, demo.intranet, demo.intranet, demo.internet, by="ops@bank")
    assert [change.column for change in accepted.comparison.breaking] == ["fee"] and accepted.unflagged == 10
    assert report(demo).state == "ok" and report(demo).accepted.accepted_by == "ops@bank"  # type: ignore[union-attr]
    carried = run(demo)

    every = keys_of(merchants(range(1, 21)))
    synced, quarantined = assert_nothing_lost(MERCHANTS, demo.intranet, demo.internet, demo.intranet, every)
    assert quarantined == {key for key in every if key[0] % 2 == 1}, "1.15 never fits numeric(18,1)"
    assert carried.status == "partial" and synced == every - quarantined


def test_a_renamed_mapped_column_stops_the_mapping_until_it_is_renamed_back(synced_once: ZonePair) -> None:
    demo = synced_once
    execute(demo.internet, "ALTER TABLE merchant RENAME COLUMN email TO login_email")
    later = merchants(range(11, 21))
    seed(demo.intranet, "merchant", later, ["merchant_id"])

    stopped = run(demo)

    assert stopped.status == "error" and stopped.flagged == 0
    assert (
        "column 'email': varchar(200) -> (no such column) (a mapped column was dropped or renamed)" in stopped.message
    )
    assert "add the column back (or rename it back), or change the mapping" in stopped.message
    assert "\n" not in stopped.message
    assert not any(source_rows(demo.intranet, MERCHANTS)[key]["__flag"] for key in keys_of(later))
    execute(demo.internet, "ALTER TABLE merchant RENAME COLUMN login_email TO email")
    assert run(demo).status == "success"
    assert_nothing_lost(MERCHANTS, demo.intranet, demo.internet, demo.intranet, keys_of(later))


def test_a_compatible_change_is_accepted_and_the_run_goes_on(synced_once: ZonePair) -> None:
    demo = synced_once
    execute(demo.internet, "ALTER TABLE merchant ADD COLUMN channel_note varchar(20)")
    later = merchants(range(11, 21))
    seed(demo.intranet, "merchant", later, ["merchant_id"])

    result = run(demo)

    assert result.status == "success" and result.flagged == len(later)
    found = report(demo)
    assert found.state == "ok" and found.accepted is not None and found.accepted.accepted_by == "zonesync"
    assert (
        "column 'channel_note': (no such column) -> " in found.accepted.note and "a new column" in found.accepted.note
    )


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_change_during_a_run_rolls_the_batch_in_flight_back(synced_once: ZonePair) -> None:
    demo = synced_once
    later = merchants(range(11, 41))
    seed(demo.intranet, "merchant", later, ["merchant_id"])
    before = set(target_rows(demo.internet, MERCHANTS))

    # The second batch's rows are claimed (flagged, uncommitted) when a DBA narrows the target's fee column.
    with interleaved("batch:claimed", lambda: execute(demo.internet, NARROW_FEE[demo.internet_backend]), at=2):
        stopped = run(demo, batch_size=10)

    assert stopped.status == "error" and "changed while a batch was written" in stopped.message
    assert stopped.flagged == 10, "only the first batch, written before the change, is flagged"
    sources, targets = source_rows(demo.intranet, MERCHANTS), target_rows(demo.internet, MERCHANTS)
    flagged = {key for key in keys_of(later) if sources[key]["__flag"]}
    assert set(targets) - before == flagged, "a rolled-back batch left rows in the target"
    # What differs now is what the DBA's ALTER rounded in place (rows synced before it), nothing zonesync wrote.
    assert {key for key in flagged if targets[key]["fee"] != sources[key]["fee"]} == {
        key for key in flagged if sources[key]["fee"] == Decimal("1.15")
    }
    assert errors(demo.intranet) == []

    assert run(demo).status == "error"  # the next run finds a breaking change and stops before writing
    accept_live(MERCHANTS, demo.intranet, demo.intranet, demo.internet, by="ops@bank")
    run(demo)
    every = keys_of(merchants(range(1, 41)))
    _, quarantined = assert_nothing_lost(MERCHANTS, demo.intranet, demo.internet, demo.intranet, every)
    assert quarantined == {key for key in every if key[0] % 2 == 1}


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_an_update_after_a_breaking_change_is_refused_with_the_change(synced_once: ZonePair) -> None:
    from zonesync.tasks.update.rollback import update_record

    demo = synced_once
    execute(demo.internet, NARROW_FEE[demo.internet_backend])

    result = update_record(MERCHANTS, {"merchant_id": 2}, {"fee": "4.00"})

    assert result.status == "error" and result.reason == "schema_changed"
    assert "column 'fee'" in result.message and "zonesync schema accept merchants" in result.message
    assert source_rows(demo.intranet, MERCHANTS)[(2,)]["fee"] == Decimal("3.00")
    assert target_rows(get_engine("internet"), MERCHANTS)[(2,)]["fee"] == Decimal("3.00")


NARROW_SOURCE_FEE = {
    "postgresql": "ALTER TABLE merchant ALTER COLUMN fee TYPE numeric(18,0)",
    "mariadb": "ALTER TABLE merchant MODIFY fee decimal(18,0) NOT NULL",
}


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_the_running_api_checks_each_push_against_the_tables_as_they_are_now(demo: ZonePair) -> None:
    """The source column narrowed while the API runs: a push it would round is refused (422, naming the live
    type), not stored rounded in both zones; one that fits is kept pending until the change is accepted."""
    from tests.integration.test_http_api import serve

    record = (
        '{"merchant_id": %d, "merchant_name": "Toko", "status": "A", "fee": "%s", "updated_at": "2026-11-26T10:00:00Z"}'
    )
    served = serve()
    client = next(served)
    try:
        assert post(client, record % (1, "2.50")).status_code == 201  # the API has read the tables
        execute(demo.intranet, NARROW_SOURCE_FEE[demo.intranet_backend])

        rounded = post(client, record % (2, "2.55"))
        fits = post(client, record % (3, "4"))
    finally:
        served.close()

    assert rounded.status_code == 422, rounded.text
    assert rounded.json()["reason"] == "invalid_value" and "column 'fee'" in rounded.text and "keeps 0" in rounded.text
    assert (2,) not in source_rows(demo.intranet, MERCHANTS) and (2,) not in target_rows(demo.internet, MERCHANTS)
    assert fits.status_code == 202, fits.text
    assert "schema change: intranet zone, table 'merchant', column 'fee'" in fits.json()["message"]
    assert not source_rows(demo.intranet, MERCHANTS)[(3,)]["__flag"] and (3,) not in target_rows(
        demo.internet, MERCHANTS
    )


def post(client, body: str):  # type: ignore[no-untyped-def]
    return client.post("/mappings/merchants/records", content=body, headers={"content-type": "application/json"})


def test_no_false_alarm_over_repeated_runs_pushes_and_updates_without_ddl(synced_once: ZonePair) -> None:
    from zonesync.tasks.push.pusher import push_records
    from zonesync.tasks.update.rollback import update_record

    demo = synced_once
    first = report(demo).accepted
    for round_ in range(8):
        seed(demo.intranet, "merchant", merchants(range(100 + 10 * round_, 105 + 10 * round_)), ["merchant_id"])
        assert run(demo).status == "success"
        pushed = {**demo_data.NEW_MERCHANT, "merchant_id": 1000 + round_, "email": f"m{round_}@example.com"}
        assert push_records("merchants", [pushed]).status == "success"
        assert update_record(MERCHANTS, {"merchant_id": 2}, {"fee": f"{round_}.50"}).status == "success"

    found = report(demo)
    assert found.state == "ok" and found.accepted == first, "the accepted shape was replaced without a change"
    assert errors(demo.intranet) == []


KEY_COLLATION = {  # the text key of the notes' target (utf8mb4_bin on MariaDB, the default on PostgreSQL)
    "postgresql": ('ALTER TABLE zs_note ALTER COLUMN note_key TYPE varchar(80) COLLATE "C"',
                   'ALTER TABLE zs_note ALTER COLUMN note_key TYPE varchar(80) COLLATE pg_catalog."default"'),
    "mariadb": ("ALTER TABLE zs_note MODIFY note_key varchar(80) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
                "ALTER TABLE zs_note MODIFY note_key varchar(80) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
}  # fmt: skip


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_key_collation_change_stops_the_mapping_until_it_is_undone(zones: ZonePair) -> None:
    from tests.integration.data import notes
    from tests.integration.helpers import create
    from tests.integration.mappings import NOTES
    from tests.integration.tables import source_tables, target_tables

    create(zones.intranet, source_tables(), "zs_note_src")
    create(zones.internet, target_tables(), "zs_note")
    seed(zones.intranet, "zs_note_src", notes(["a", "b"]), ["note_key"])
    assert sync(NOTES, zones.intranet, zones.internet, zones.intranet, batch_size=100).status == "success"
    change, undo = KEY_COLLATION[zones.internet_backend]
    execute(zones.internet, change)
    seed(zones.intranet, "zs_note_src", notes(["c", "C"]), ["note_key"])  # one key, or two, by the collation

    stopped = sync(NOTES, zones.intranet, zones.internet, zones.intranet, batch_size=100)

    assert stopped.status == "error" and "column 'note_key'" in stopped.message, stopped.message
    assert "the collation of a key column changed" in stopped.message and "restore" not in stopped.message
    assert set(target_rows(zones.internet, NOTES)) == {("a",), ("b",)}
    execute(zones.internet, undo)
    assert sync(NOTES, zones.intranet, zones.internet, zones.intranet, batch_size=100).status == "success"
    assert set(target_rows(zones.internet, NOTES)) == {("a",), ("b",), ("c",), ("C",)}
