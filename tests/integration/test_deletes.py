"""Rows that end (docs/deletes.md): a row deleted in the source leaves a tombstone (the delete capture that
`zonesync init --triggers` installs), and the next sync carries it to the target by the mapping's `on_delete`
policy, before the rows: claimed, applied only while the target row is not newer, refused into the quarantine
otherwise, counted."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration.data import notes as note_rows
from tests.integration.helpers import (
    create,
    errors_by_key,
    execute,
    jobs,
    rows,
    seed,
    source_rows,
    sync,
    target_rows,
)
from tests.integration.mappings import NOTES
from tests.integration.tables import collated_note_tables
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.examples.tables import intranet_tables
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.deletes.sweep import record_deletes, sweep_orphans
from zonesync.tasks.reconcile.compare import reconcile_mapping
from zonesync.tasks.reporting.sync_run import counts_line
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.setup import demo_data
from zonesync.tasks.setup.inspection import check_mapping
from zonesync.tasks.setup.triggers import install_delete_capture
from zonesync.tasks.zones.checkpoints import interleaved

MERCHANT_COUNT = 4  # all valid (demo merchant 13 is the first invalid one)


def carry(pair: ZonePair, mapping: SyncMapping) -> MappingSyncResult:
    return sync(mapping, pair.intranet, pair.internet, pair.intranet, batch_size=10)


def synced_merchants(pair: ZonePair, mapping: SyncMapping) -> None:
    """Merchants 1-4 in both zones, flagged; the delete capture installed on the intranet table."""
    seed(pair.intranet, "merchant", demo_data.merchants(MERCHANT_COUNT), ("merchant_id",))
    assert carry(pair, mapping).flagged == MERCHANT_COUNT
    install_delete_capture(mapping, pair.intranet)


def tombstones(pair: ZonePair) -> list[dict[str, Any]]:
    return sorted(rows(pair.intranet, "sync_tombstone"), key=lambda row: row["id"])


def deleted_counts(result: MappingSyncResult) -> tuple[int, int, int]:
    return result.deletes_applied, result.deletes_skipped, result.deletes_refused


def with_policy(on_delete: str, **options: Any) -> SyncMapping:
    return dataclasses.replace(MERCHANTS, on_delete=on_delete, **options)  # type: ignore[arg-type]


def drop_delete_trigger(pair: ZonePair) -> None:
    """A delete capture turned off behind zonesync's back."""
    on = " ON merchant" if pair.intranet_backend == "postgresql" else ""
    execute(pair.intranet, f"DROP TRIGGER zonesync_deletes_merchants{on}")


def add_soft_marker(pair: ZonePair) -> None:
    timestamp = {"postgresql": "timestamptz", "mariadb": "datetime(6)"}.get(pair.internet_backend, "varchar(40)")
    execute(pair.internet, f"ALTER TABLE merchant ADD COLUMN deleted_at {timestamp}")


@pytest.mark.parametrize("on_delete", ["hard", "archive", "soft", "ignore"])
def test_each_policy_carries_a_deleted_merchant_in_the_next_run(demo: ZonePair, on_delete: str) -> None:
    mapping = with_policy(on_delete)
    if on_delete == "soft":
        add_soft_marker(demo)
    synced_merchants(demo, mapping)

    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 2")
    result = carry(demo, mapping)

    assert deleted_counts(result) == ((0, 1, 0) if on_delete == "ignore" else (1, 0, 0))
    assert result.status == "success" and result.read == 0
    left = target_rows(demo.internet, MERCHANTS)
    assert set(left) == ({(1,), (2,), (3,), (4,)} if on_delete in ("soft", "ignore") else {(1,), (3,), (4,)})
    markers = {row["merchant_id"]: row.get("deleted_at") for row in rows(demo.internet, "merchant")}
    if on_delete == "soft":
        assert markers[2] is not None and [markers[i] for i in (1, 3, 4)] == [None] * 3
    archived = rows(demo.internet, "merchant_archive")
    if on_delete == "archive":
        name = demo_data.merchants(2)["merchant_name"][1]
        assert [(row["merchant_id"], row["name"]) for row in archived] == [(2, name)]
        assert archived[0]["deleted_at"] is not None
    else:
        assert archived == []
    [tombstone] = tombstones(demo)
    assert tombstone["outcome"] == ("skipped" if on_delete == "ignore" else "applied")
    assert deleted_counts(carry(demo, mapping)) == (0, 0, 0)  # carried once


def test_a_tombstone_holds_the_key_and_version_only(demo: ZonePair) -> None:
    mapping = with_policy("hard")
    synced_merchants(demo, mapping)
    version = source_rows(demo.intranet, MERCHANTS)[(3,)]["updated_at"]

    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 3")

    [tombstone] = tombstones(demo)
    assert {name for name, value in tombstone.items() if value is not None} == {
        "id", "mapping", "record_key", "version", "deleted_at", "is_sync",
    }  # fmt: skip
    assert tombstone["mapping"] == "merchants" and "3" in tombstone["record_key"]
    deleted = demo_data.merchants(3).row(2, named=True)
    assert deleted["merchant_name"] not in str(tombstone) and deleted["tax_id"] not in str(tombstone)  # no values
    assert str(version.year) in tombstone["version"]


def test_a_key_deleted_and_inserted_again_ends_as_inserted(demo: ZonePair) -> None:
    mapping = with_policy("hard")
    synced_merchants(demo, mapping)

    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 2")
    seed(demo.intranet, "merchant", demo_data.merchants(2)[1:].with_columns(merchant_name=pl.lit("x")),
         ("merchant_id",))  # fmt: skip
    result = carry(demo, mapping)

    assert deleted_counts(result) == (0, 0, 0) and result.flagged == 1  # superseded by the insert: never carried
    assert [row["outcome"] for row in tombstones(demo)] == ["superseded"]
    assert target_rows(demo.internet, MERCHANTS)[(2,)]["name"] == "x"


def test_an_insert_of_a_key_whose_delete_is_being_carried_lands_after_it(demo: ZonePair) -> None:
    """The insert's trigger would supersede the tombstone, which the run has claimed: it waits for the run, and
    the next run sends the row inserted again. The later wins."""
    mapping = with_policy("hard")
    synced_merchants(demo, mapping)
    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 2")
    again = demo_data.merchants(2)[1:].with_columns(merchant_name=pl.lit("again"))
    inserting = threading.Thread(target=seed, args=(demo.intranet, "merchant", again, ("merchant_id",)))

    with interleaved("deletes:claimed", inserting.start):
        first = carry(demo, mapping)
    inserting.join(timeout=60)
    second = carry(demo, mapping)

    # The insert lands once the claim commits: in time for this run's rows, or for the next run.
    assert deleted_counts(first) == (1, 0, 0) and first.flagged + second.flagged == 1
    assert target_rows(demo.internet, MERCHANTS)[(2,)]["name"] == "again"
    assert source_rows(demo.intranet, MERCHANTS)[(2,)]["__flag"]


def test_a_delete_is_never_applied_over_a_newer_target_row(demo: ZonePair) -> None:
    mapping = with_policy("hard")
    synced_merchants(demo, mapping)
    later = "2099-01-01 00:00:00" + ("+00" if demo.internet_backend == "postgresql" else "")
    execute(demo.internet, "UPDATE merchant SET updated_at = :later WHERE merchant_id = 2", {"later": later})

    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 2")
    result = carry(demo, mapping)

    assert deleted_counts(result) == (0, 0, 1) and result.status == "partial"
    assert (2,) in target_rows(demo.internet, MERCHANTS)
    refused = errors_by_key(demo.intranet, MERCHANTS, open_only=True)[(2,)]
    assert refused["reason"] == "delete_conflict" and "newer" in refused["detail"]
    assert [(row["is_sync"] in (False, 0), row["outcome"]) for row in tombstones(demo)] == [(True, "conflict")]
    assert deleted_counts(carry(demo, mapping)) == (0, 0, 1)  # pending: tried again, refused again


@pytest.mark.parametrize("on_delete", ["hard", "archive", "soft"])
def test_a_row_in_a_state_never_deleted_stays(demo: ZonePair, on_delete: str) -> None:
    """A batch in which some rows go and one stays: the statement's returned keys say which went, the rest is
    judged (on MariaDB, whose UPDATE returns no rows, a `soft` batch is judged first and counted)."""
    mapping = with_policy(on_delete, never_delete={"status": ("I",)})
    if on_delete == "soft":
        add_soft_marker(demo)
    synced_merchants(demo, mapping)
    execute(demo.internet, "UPDATE merchant SET status = 'I' WHERE merchant_id = 3")

    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id IN (2, 3)")
    result = carry(demo, mapping)

    assert deleted_counts(result) == (1, 0, 1)
    live = {row["merchant_id"] for row in rows(demo.internet, "merchant") if not row.get("deleted_at")}
    assert live == {1, 3, 4}
    assert errors_by_key(demo.intranet, MERCHANTS, open_only=True)[(3,)]["reason"] == "delete_kept"
    assert [(row["is_sync"] in (True, 1), row["outcome"]) for row in tombstones(demo)] == [
        (True, "applied"), (False, "kept")]  # fmt: skip


def test_a_run_stopped_after_the_target_delete_finds_the_row_gone_next_time(demo: ZonePair) -> None:
    mapping = with_policy("archive")
    synced_merchants(demo, mapping)
    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 4")

    def stop() -> None:
        raise RuntimeError("the process stops here")

    with interleaved("deletes:applied", stop):
        stopped = carry(demo, mapping)
    assert stopped.status == "error" and "the process stops here" in stopped.message
    assert [row["is_sync"] in (False, 0) for row in tombstones(demo)] == [True]  # the source rolled back
    result = carry(demo, mapping)

    assert deleted_counts(result) == (1, 0, 0)
    assert [row["outcome"] for row in tombstones(demo)] == ["absent"]
    assert len(rows(demo.internet, "merchant_archive")) == 1  # archived once


def test_a_soft_deleted_row_sent_again_lives_again(demo: ZonePair) -> None:
    mapping = with_policy("soft")
    add_soft_marker(demo)
    synced_merchants(demo, mapping)
    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 1")
    carry(demo, mapping)

    seed(demo.intranet, "merchant", demo_data.merchants(1), ("merchant_id",))
    carry(demo, mapping)

    assert {row["merchant_id"]: row["deleted_at"] for row in rows(demo.internet, "merchant")}[1] is None


def test_deletes_are_carried_on_every_pairing(demo_pair: ZonePair) -> None:
    mapping = with_policy("archive")
    synced_merchants(demo_pair, mapping)

    execute(demo_pair.intranet, "DELETE FROM merchant WHERE merchant_id IN (1, 3)")
    result = carry(demo_pair, mapping)

    assert deleted_counts(result) == (2, 0, 0)
    assert set(target_rows(demo_pair.internet, MERCHANTS)) == {(2,), (4,)}
    assert sorted(row["merchant_id"] for row in rows(demo_pair.internet, "merchant_archive")) == [1, 3]


def test_deletes_of_many_batches_are_each_applied_once(demo_pair: ZonePair) -> None:
    """Batches of 3: where claims return what they flag (PostgreSQL, SQLite), the next batch is claimed while one is
    delivered (SQLite, locking its whole file, waits instead); every delete lands once, in order, counted once."""
    mapping = with_policy("archive")
    seed(demo_pair.intranet, "merchant", demo_data.merchants(12), ("merchant_id",))
    assert carry(demo_pair, mapping).flagged == 12
    install_delete_capture(mapping, demo_pair.intranet)

    execute(demo_pair.intranet, "DELETE FROM merchant WHERE merchant_id <= 11")
    result = sync(mapping, demo_pair.intranet, demo_pair.internet, demo_pair.intranet, batch_size=3)

    assert deleted_counts(result) == (11, 0, 0) and result.status == "success"
    assert set(target_rows(demo_pair.internet, MERCHANTS)) == {(12,)}
    assert keys_of(rows(demo_pair.internet, "merchant_archive")) == list(range(1, 12))  # each archived once
    assert [(row["is_sync"] in (True, 1), row["outcome"]) for row in tombstones(demo_pair)] == [(True, "applied")] * 11


def test_a_payment_deleted_in_the_internet_zone_leaves_its_tombstone_there(demo: ZonePair) -> None:
    """A trigger writes only its own database: the tombstones of a mapping out of the internet zone live there."""
    payments = dataclasses.replace(PAYMENTS, on_delete="hard")
    seed(demo.internet, "payment", demo_data.payments(6), ("payment_id",))
    assert sync(payments, demo.internet, demo.intranet, demo.intranet, batch_size=10).flagged == 5  # 1 is pending
    install_delete_capture(payments, demo.internet)

    execute(demo.internet, "DELETE FROM payment WHERE payment_id IN (2, 3)")
    result = sync(payments, demo.internet, demo.intranet, demo.intranet, batch_size=10)

    assert deleted_counts(result) == (2, 0, 0)
    assert sorted(key for (key,) in target_rows(demo.intranet, PAYMENTS)) == [4, 5, 6]
    assert [row["outcome"] for row in rows(demo.internet, "sync_tombstone")] == ["applied", "applied"]
    assert "sync_tombstone" not in sa.inspect(demo.intranet).get_table_names()


@pytest.mark.parametrize("behind_zonesync", ["trigger-dropped", "truncate", "restore"])
def test_the_orphan_sweep_finds_every_delete_made_behind_zonesyncs_back(
    demo_pair: ZonePair, behind_zonesync: str
) -> None:
    """Deletes that leave no tombstone: each orphan is listed, a delete on its way is not one, nothing is deleted."""
    mapping = with_policy("archive")
    synced_merchants(demo_pair, mapping)
    execute(demo_pair.intranet, "DELETE FROM merchant WHERE merchant_id = 1")  # captured: pending, not an orphan
    # (a restore brings merchant 1 back: then it is no orphan either)
    if behind_zonesync == "trigger-dropped":
        drop_delete_trigger(demo_pair)
        execute(demo_pair.intranet, "DELETE FROM merchant WHERE merchant_id IN (2, 4)")
        expected = [(2,), (4,)]
    elif behind_zonesync == "truncate":  # fires no row trigger (SQLite has no TRUNCATE: its trigger dropped)
        if demo_pair.intranet_backend == "sqlite":
            drop_delete_trigger(demo_pair)
        execute(
            demo_pair.intranet,
            "DELETE FROM merchant" if demo_pair.intranet_backend == "sqlite" else "TRUNCATE TABLE merchant",
        )
        expected = [(2,), (3,), (4,)]
    else:  # a restore of an older copy of the table, which did not have merchant 3 yet (its triggers gone with it)
        intranet_tables().tables["merchant"].drop(demo_pair.intranet)
        intranet_tables().tables["merchant"].create(demo_pair.intranet)
        older = demo_data.merchants(MERCHANT_COUNT).filter(pl.col("merchant_id") != 3)
        seed(demo_pair.intranet, "merchant", older.with_columns(is_sync=True), ("merchant_id",))
        expected = [(3,)]
    target_before = target_rows(demo_pair.internet, MERCHANTS)

    found = sweep_orphans(mapping, demo_pair.intranet, demo_pair.internet, batch_size=2)

    assert (list(found.keys), found.count) == (expected, len(expected)), found
    assert found.pending_deletes == (0 if behind_zonesync == "restore" else 1)  # merchant 1's delete, on its way
    assert target_rows(demo_pair.internet, MERCHANTS) == target_before  # nothing deleted


def test_the_reconciliation_counts_the_deletes_not_carried_yet(demo: ZonePair) -> None:
    mapping = with_policy("archive")
    synced_merchants(demo, mapping)
    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id = 4")

    before = reconcile_mapping(mapping, None, demo.intranet, demo.internet)
    carry(demo, mapping)
    after = reconcile_mapping(mapping, None, demo.intranet, demo.internet)

    assert (before.pending_deletes, before.comparison.only_in_target_keys) == (1, ((4,),))
    assert "1 delete(s) not carried yet" in before.headline()
    assert (after.pending_deletes, after.ok) == (0, True) and "not carried" not in after.headline()


def test_deletes_recorded_for_rows_only_in_the_target_are_carried_by_the_policy(demo_pair: ZonePair) -> None:
    """What `reconcile --repair` does with rows only in the target where the mapping carries deletes: tombstones as
    the capture writes them (a re-insert supersedes them), then the next sync applies the policy."""
    mapping = with_policy("archive")
    synced_merchants(demo_pair, mapping)
    drop_delete_trigger(demo_pair)
    execute(demo_pair.intranet, "DELETE FROM merchant WHERE merchant_id IN (2, 3)")  # behind zonesync's back

    recorded = record_deletes(mapping, demo_pair.intranet, [(2,), (3,), (4,)])  # 4 still lives: no tombstone
    seed(demo_pair.intranet, "merchant", demo_data.merchants(3)[2:], ("merchant_id",))  # 3 comes back: superseded
    result = carry(demo_pair, mapping)

    assert recorded == 2 and deleted_counts(result) == (1, 0, 0)
    assert keys_of(rows(demo_pair.internet, "merchant_archive")) == [2] and (3,) in target_rows(
        demo_pair.internet, MERCHANTS
    )
    assert sorted(row["outcome"] for row in tombstones(demo_pair)) == ["applied", "superseded"]


def keys_of(found: list[dict[str, Any]]) -> list[int]:
    return sorted(row["merchant_id"] for row in found)


@pytest.mark.usefixtures("prefect_harness")
def test_a_retry_run_counts_its_deletes_in_the_ledger_and_its_summary(demo: ZonePair) -> None:
    synced_merchants(demo, MERCHANTS)  # the demo's merchants: archived
    execute(demo.intranet, "DELETE FROM merchant WHERE merchant_id IN (1, 2)")

    report = retry_sync(mappings=["merchants"])

    merchants = report["merchants"]
    assert (merchants.status, deleted_counts(merchants)) == ("success", (2, 0, 0))
    [*_, job] = jobs(demo.intranet)
    assert (job["status"], job["rows_eligible"], job["rows_synced"], job["rows_failed"]) == ("SUCCESS", 2, 2, 0)
    assert "deletes: 2 applied, 0 skipped, 0 refused" in counts_line(merchants)  # the summary artifact's line


def test_init_says_what_a_delete_policy_lacks(demo: ZonePair) -> None:
    """`zonesync init`'s check: the soft marker column, the archive table, and a version to check deletes against."""

    def warnings(mapping: SyncMapping) -> list[str]:
        return check_mapping(mapping, demo.intranet, demo.internet).warnings

    assert any("needs a nullable column 'deleted_at'" in why for why in warnings(with_policy("soft")))
    assert any("needs the table 'nowhere'" in why for why in warnings(with_policy("archive", archive_table="nowhere")))
    assert warnings(with_policy("archive")) == warnings(MERCHANTS) == []  # the demo has its archive table
    unchecked = [why for why in warnings(with_policy("hard", version_column=None)) if "without a version_column" in why]
    assert unchecked and "applied whatever the target row holds" in unchecked[0]


@pytest.mark.parametrize("on_delete", ["hard", "soft"])
def test_text_keys_are_deleted_whatever_the_collation_orders_first(zones: ZonePair, on_delete: str) -> None:
    """Keys "B" and "a" in one batch: polars sorts "B" first, a linguistic collation "a"; the target is not read
    within a key range built from polars' order (it found neither row: both deletes were counted `absent`)."""
    notes = dataclasses.replace(NOTES, on_delete=on_delete)  # type: ignore[arg-type]
    source, target = collated_note_tables()
    create(zones.intranet, source, "zs_note_src")
    create(zones.internet, target, "zs_note")
    if on_delete == "soft":
        timestamp = {"postgresql": "timestamptz", "mariadb": "datetime(6)"}.get(zones.internet_backend, "varchar(40)")
        execute(zones.internet, f"ALTER TABLE zs_note ADD COLUMN deleted_at {timestamp}")
    seed(zones.intranet, "zs_note_src", note_rows(["B", "a", "c"]), ("note_key",))
    assert sync(notes, zones.intranet, zones.internet, zones.intranet, batch_size=10).flagged == 3
    install_delete_capture(notes, zones.intranet)

    execute(zones.intranet, "DELETE FROM zs_note_src WHERE note_key IN ('B', 'a')")
    result = sync(notes, zones.intranet, zones.internet, zones.intranet, batch_size=10)

    assert deleted_counts(result) == (2, 0, 0)
    live = {row["note_key"] for row in rows(zones.internet, "zs_note") if not row.get("deleted_at")}
    assert live == {"c"}
