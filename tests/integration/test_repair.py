"""Repair: rows marked for the next sync (`zonesync resync`: keys, a key range, a business date; in chunks, only
flagged rows written) and a reconciliation's differences sent again (`zonesync reconcile --repair`), which reports
rows only in the target and never deletes them."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from tests.conftest import ZonePair
from tests.integration.console import SQLITE_ONLY, InProcessCli
from tests.integration.helpers import errors_by_key, execute, mapped, seed, source_rows, sync, target_rows
from zonesync.schemas.errors import ConfigError
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.tasks.reconcile.repair import Selection, resync
from zonesync.tasks.setup import demo_data
from zonesync.tasks.update.rollback import update_record


def synced_merchants(pair: ZonePair, count: int = 40, *, valid_only: bool = False) -> None:
    merchants = demo_data.merchants(count)
    if valid_only:  # an invalid merchant is quarantined: the zones would differ by it whatever a repair does
        merchants = merchants.filter(~pl.col("merchant_id").is_in(list(demo_data.INVALID_MERCHANTS)))
    seed(pair.intranet, "merchant", merchants, ["merchant_id"])
    sync(MERCHANTS, pair.intranet, pair.internet, pair.intranet, batch_size=100)


def unflagged(pair: ZonePair) -> set[int]:
    return {key for (key,), row in source_rows(pair.intranet, MERCHANTS).items() if not row["__flag"]}


def test_the_chosen_keys_are_marked_and_the_next_sync_sends_them_again(demo: ZonePair) -> None:
    synced_merchants(demo)

    marked = resync(MERCHANTS, demo.intranet, Selection(keys=((3,), (5,), (13,), (404,))))

    assert (marked.marked, marked.already_pending) == (2, 1)  # 13 is quarantined (invalid): pending already
    assert unflagged(demo) == {3, 5, 13}
    again = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=100)
    assert (again.read, again.flagged) == (3, 2) and unflagged(demo) == {13}


def test_a_key_range_is_marked_chunk_by_chunk(demo: ZonePair) -> None:
    synced_merchants(demo)

    marked = resync(MERCHANTS, demo.intranet, Selection(key_range=(10, 20)), chunk=4)

    assert (marked.marked, marked.already_pending, marked.chunks) == (10, 1, 3)
    assert unflagged(demo) == set(range(10, 21))


def test_a_business_date_marks_that_day_s_eligible_rows(demo: ZonePair) -> None:
    payments = demo_data.payments(60)
    seed(demo.internet, "payment", payments, ["payment_id"])
    sync(PAYMENTS, demo.internet, demo.intranet, demo.intranet, batch_size=100)
    successful = payments.filter(pl.col("status") == "S").height
    invalid = len(demo_data.INVALID_PAYMENTS)  # quarantined: pending already

    marked = resync(PAYMENTS, demo.internet, Selection(business_date=demo_data.DEMO_BUSINESS_DATE))

    assert (marked.marked, marked.already_pending) == (successful - invalid, invalid)
    assert resync(PAYMENTS, demo.internet, Selection(business_date=date(2001, 1, 1))).marked == 0


@pytest.mark.parametrize(
    ("selection", "says"),
    [({}, "one way"), ({"keys": ((1,),), "key_range": (1, 2)}, "one way"),
     ({"business_date": date(2026, 11, 25)}, "has no business_date_column")],
)  # fmt: skip
def test_a_selection_that_cannot_work_is_one_clear_error(demo: ZonePair, selection: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        resync(MERCHANTS, demo.intranet, Selection(**selection))


# The command's own work (marking through `resync`, running the sync, comparing again) is the same on every backend,
# whose part the tests above and test_reconcile.py cover: once, on SQLite.
@SQLITE_ONLY
def test_reconcile_repair_resends_what_differs_or_is_missing_and_never_deletes(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    synced_merchants(demo_zones, valid_only=True)
    execute(demo_zones.internet, "UPDATE merchant SET name = 'not what the source says' WHERE merchant_id = 7")
    execute(demo_zones.internet, "DELETE FROM merchant WHERE merchant_id = 9")
    extra = {**mapped(source_rows(demo_zones.intranet, MERCHANTS)[(1,)]), "merchant_id": 9999, "email": None}
    seed(demo_zones.internet, "merchant", pl.DataFrame([extra]), ["merchant_id"])

    run = flow_cli_in_process("reconcile", "-m", "merchants", "--repair")

    said = " ".join(run.stdout.split())
    assert run.code == 3, str(run)  # the row only in the target stays: reported, never deleted
    assert "merchants: 2 row(s) marked for the next sync" in said and "1 row(s) only in the target" in said, said
    assert "merchants after the repair: ZONES DIFFER" in said and "1 only in the target" in said, said
    target, source = target_rows(demo_zones.internet, MERCHANTS), source_rows(demo_zones.intranet, MERCHANTS)
    assert target[(7,)] == mapped(source[(7,)]) and target[(9,)] == mapped(source[(9,)]) and (9999,) in target

    execute(demo_zones.internet, "DELETE FROM merchant WHERE merchant_id = 9999")
    assert flow_cli_in_process("reconcile", "-m", "merchants", "--repair").code == 0


def test_a_quarantined_row_that_lands_some_other_way_is_resolved_by_the_next_run(demo: ZonePair) -> None:
    """#13 (an empty name) is quarantined; an update fixes it in both zones (an update only records refusals);
    the next scheduled run finds its source row flagged and resolves the entry, though it has nothing to carry."""
    synced_merchants(demo, count=20)
    assert (13,) in errors_by_key(demo.intranet, MERCHANTS, open_only=True)

    assert update_record(MERCHANTS, {"merchant_id": 13}, {"merchant_name": "Toko Baru #13"}).status == "success"
    assert (13,) in errors_by_key(demo.intranet, MERCHANTS, open_only=True)

    again = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=100)

    assert again.read == 0 and errors_by_key(demo.intranet, MERCHANTS, open_only=True) == {}
    assert errors_by_key(demo.intranet, MERCHANTS)[(13,)]["resolved_at"] is not None  # resolved, never deleted


@SQLITE_ONLY
def test_reconcile_repair_of_an_incoming_mapping_runs_the_end_day_check_for_the_date(
    demo_zones: ZonePair, flow_cli_in_process: InProcessCli
) -> None:
    payments = demo_data.payments(60).filter(~pl.col("payment_id").is_in(list(demo_data.INVALID_PAYMENTS)))
    seed(demo_zones.internet, "payment", payments, ["payment_id"])
    sync(PAYMENTS, demo_zones.internet, demo_zones.intranet, demo_zones.intranet, batch_size=100)
    gone = payments.filter(pl.col("status") == "S")["payment_id"][0]
    execute(demo_zones.intranet, f"DELETE FROM payment WHERE payment_id = {gone}")
    day = demo_data.DEMO_BUSINESS_DATE.isoformat()

    run = flow_cli_in_process("reconcile", "-m", "payments", "--date", day, "--repair")

    said = " ".join(run.stdout.split())
    assert run.code == 0, str(run)
    assert "payments: 1 row(s) marked for the next sync" in said and "payments after the repair: agree" in said, said
    assert (gone,) in target_rows(demo_zones.intranet, PAYMENTS)


@SQLITE_ONLY
def test_reconcile_orphans_lists_target_rows_whose_source_row_is_gone_and_deletes_nothing(
    demo_zones: ZonePair, cli_in_process: InProcessCli
) -> None:
    synced_merchants(demo_zones, valid_only=True)
    clean = cli_in_process("reconcile", "-m", "merchants", "--orphans")
    execute(demo_zones.intranet, "DELETE FROM merchant WHERE merchant_id IN (5, 6)")  # no capture installed

    run = cli_in_process("reconcile", "-m", "merchants", "--orphans")

    assert clean.code == 0 and "merchants: " in clean.stdout and "no orphan" in clean.stdout, str(clean)
    said = " ".join(run.stdout.split())
    assert run.code == 3, str(run)
    assert "2 orphan(s), only in the target: (5,), (6,)" in said and "nothing deleted" in said, said
    assert {(5,), (6,)} <= set(target_rows(demo_zones.internet, MERCHANTS))
