"""One writer per mapping: the lease that keeps overlapping retry syncs harmless and keeps an update from
interleaving with a retry batch (which could put old values back on a row the update has flagged)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration.helpers import execute, mapped, source_rows, target_rows
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.bookkeeping.lease import Lease, LeaseLost, carried_by, holding, mapping_lease
from zonesync.tasks.bookkeeping.tables import sync_lease
from zonesync.tasks.push.pusher import push_records
from zonesync.tasks.update import rollback as update
from zonesync.tasks.zones.engines import get_engine

MERCHANT = {
    "merchant_id": 1,
    "merchant_name": "Toko",
    "status": "A",
    "fee": "2.50",
    "updated_at": "2026-11-26 10:00:00",
}


def held_elsewhere(ttl: float = 60) -> Lease:
    """The merchants lease, taken as another process would."""
    lease = Lease(get_engine("intranet"), mapping_lease("merchants"), ttl)
    assert lease.try_acquire()
    return lease


@pytest.mark.usefixtures("prefect_harness")
def test_a_retry_sync_skips_a_mapping_another_run_is_syncing(demo: ZonePair) -> None:
    execute(demo.intranet, "INSERT INTO merchant (merchant_id, merchant_name, status, fee, updated_at, is_sync) "
            "VALUES (1, 'Toko', 'A', '2.50', '2026-11-26 10:00:00', false)")  # fmt: skip
    other = held_elsewhere()

    skipped = retry_sync(mappings=["merchants"])
    other.release()
    synced = retry_sync(mappings=["merchants"])

    assert (skipped["merchants"].status, skipped["merchants"].read) == ("skipped", 0)
    assert "busy" in skipped["merchants"].message
    assert (synced["merchants"].status, synced["merchants"].flagged) == ("success", 1)


def test_an_update_waits_for_a_running_sync_and_then_reports_busy_changing_nothing(
    demo: ZonePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    push_records("merchants", [MERCHANT])
    monkeypatch.setattr(update, "UPDATE_WAIT_SECONDS", 0.3)
    other = held_elsewhere()

    result = update.update_record(MERCHANTS, {"merchant_id": 1}, {"merchant_name": "Baru"})
    other.release()

    assert (result.status, result.reason) == ("error", "busy")
    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert source["name"] == "Toko" and target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source)


def test_an_expired_lease_is_taken_over_and_its_holder_learns_it_lost_it(
    demo: ZonePair, caplog: pytest.LogCaptureFixture
) -> None:
    crashed = held_elsewhere(ttl=-1)  # expired at once, as if its holder had crashed long ago

    successor = Lease(get_engine("intranet"), mapping_lease("merchants"), 60)

    assert successor.try_acquire()
    assert f"took over the lease mapping:merchants from {crashed.holder}: it expired" in caplog.text
    assert not Lease(get_engine("intranet"), mapping_lease("merchants"), 60).try_acquire()
    with pytest.raises(LeaseLost):
        crashed.renew()
    successor.release()


def test_a_batch_loop_renews_its_lease_once_a_tenth_of_its_time_passed_and_learns_there_that_it_lost_it(
    demo: ZonePair,
) -> None:
    """A transaction per batch to renew the lease was one in ten of a 1,000-row batch's round trips: `keep`
    renews only once the latest renewal is a tenth of the lease's time old. A lease is taken only after it
    expired, a whole time to live after that renewal: the holder always renews, and learns, at its next batch."""
    lease = Lease(get_engine("intranet"), mapping_lease("merchants"), ttl=2.0)
    assert lease.try_acquire()

    def expiry() -> object:
        with demo.intranet.connect() as conn:
            return conn.execute(sa.select(sync_lease.c.expires_at)).scalar_one()

    acquired = expiry()
    lease.keep()  # just taken: nothing to renew
    assert expiry() == acquired
    time.sleep(0.25)  # past a tenth of the two seconds
    lease.keep()
    renewed = expiry()
    assert renewed > acquired  # type: ignore[operator]

    execute(demo.intranet, sa.update(sync_lease).values(holder="elsewhere:1:x"))  # expired and taken meanwhile
    time.sleep(0.25)
    with pytest.raises(LeaseLost):
        lease.keep()
    with pytest.raises(LeaseLost):  # said again at once: the run stops, whoever found it
        lease.keep()


def test_a_kept_alive_lease_outlives_its_time_to_live_and_is_free_after_the_block(demo: ZonePair) -> None:
    engine = get_engine("intranet")
    with holding(engine, "job:end-day-check", ttl=0.9, keep_alive=True):
        time.sleep(2.0)  # more than twice the time to live: only the renewals keep it
        assert not Lease(engine, "job:end-day-check", 60).try_acquire()
    assert Lease(engine, "job:end-day-check", 60).try_acquire()


def test_a_lease_left_by_a_dead_process_of_this_machine_is_free(
    demo: ZonePair, caplog: pytest.LogCaptureFixture
) -> None:
    gone = held_elsewhere()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host, _, rest = gone.holder.partition(":")
    holder = f"{host}:{dead.stdout.strip()}:{rest.split(':')[1]}"
    execute(demo.intranet, sa.update(sync_lease).values(holder=holder))

    assert Lease(get_engine("intranet"), mapping_lease("merchants"), 60).try_acquire()
    assert f"took over the lease mapping:merchants from {holder}: its process died" in caplog.text


def test_a_lease_released_with_a_run_mark_is_left_alone_by_that_runs_slices_and_free_for_any_other(
    demo: ZonePair, caplog: pytest.LogCaptureFixture
) -> None:
    name = "mapping:merchants:partition:1-of-4"
    carried = Lease(get_engine("intranet"), name, 60, run_mark=carried_by("job-7"))
    assert carried.try_acquire()
    carried.release()

    assert not Lease(get_engine("intranet"), name, 60, run_mark=carried_by("job-7")).try_acquire()  # a sibling
    next_run = Lease(get_engine("intranet"), name, 60, run_mark=carried_by("job-8"))
    assert next_run.try_acquire()
    assert not Lease(get_engine("intranet"), name, 60).try_acquire()  # held again, by the next run
    next_run.release()
    assert Lease(get_engine("intranet"), name, 60).try_acquire()  # a run without slices takes a marked lease too
    assert "took over" not in caplog.text  # a mark is a lease given up, not one taken from its holder


def test_a_part_given_up_midway_is_left_unmarked_for_the_runs_own_slices(demo: ZonePair) -> None:
    name = "mapping:merchants:partition:2-of-4"
    failed = Lease(get_engine("intranet"), name, 60, run_mark=carried_by("job-7"))
    assert failed.try_acquire()
    failed.release(done=False)

    assert Lease(get_engine("intranet"), name, 60, run_mark=carried_by("job-7")).try_acquire()  # a sibling goes on


def test_taking_a_free_lease_or_being_refused_one_takes_nothing_over(
    demo: ZonePair, caplog: pytest.LogCaptureFixture
) -> None:
    first = Lease(get_engine("intranet"), mapping_lease("merchants"), 60)
    assert first.try_acquire()  # free: nobody's lease was taken
    assert not Lease(get_engine("intranet"), mapping_lease("merchants"), 60).try_acquire()  # held: refused

    assert "took over" not in caplog.text


@pytest.mark.usefixtures("prefect_harness")
def test_updates_racing_retry_syncs_leave_both_zones_equal(demo: ZonePair) -> None:
    """No double apply under concurrency, for the update: retry flows run while rows change and updates land on them."""
    for key in range(1, 21):
        assert push_records("merchants", [{**MERCHANT, "merchant_id": key}]).status == "success"
    stop, crashes = threading.Event(), []

    def retry_until_stopped() -> None:
        try:
            while not stop.is_set():
                assert retry_sync(mappings=["merchants"], batch_size=3).ok
        except BaseException as exc:  # reported by the assertions below
            crashes.append(exc)

    retrier = threading.Thread(target=retry_until_stopped)
    retrier.start()
    results = []
    try:
        for round_ in range(12):
            key = 1 + round_ % 20
            execute(demo.intranet, f"UPDATE merchant SET is_sync = false WHERE merchant_id > {key}")  # rows to send
            results.append(update.update_record(MERCHANTS, {"merchant_id": key}, {"merchant_name": f"Toko {round_}"}))
    finally:
        stop.set()
        retrier.join(timeout=120)

    assert not retrier.is_alive() and crashes == []
    assert [r.status for r in results] == ["success"] * 12
    retry_sync(mappings=["merchants"])  # whatever the racing runs left unsynced
    source = source_rows(demo.intranet, MERCHANTS)
    assert all(row["__flag"] for row in source.values())
    assert target_rows(demo.internet, MERCHANTS) == {key: mapped(row) for key, row in source.items()}
    assert source[(12,)]["name"] == "Toko 11"
