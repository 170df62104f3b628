"""A true ledger (docs/guarantees.md, 9): every synced row counted in exactly one batch_job row, no row left RUNNING
after the next run — also when a run is killed — and a run that did nothing because others held its mappings
says SKIPPED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date

import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration.helpers import execute, rows, seed, source_rows, unflagged_keys
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas.errors import TransientSyncError
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.settings import get_settings
from zonesync.tasks.bookkeeping.lease import Lease, mapping_lease
from zonesync.tasks.bookkeeping.ledger import batch_recorder, close_abandoned, start_job
from zonesync.tasks.bookkeeping.tables import batch_job
from zonesync.tasks.setup import demo_data
from zonesync.tasks.sync.run import Zones, sync_mapping_rows
from zonesync.tasks.zones.checkpoints import interleaved
from zonesync.tasks.zones.engines import get_engine

CHILD = """
import time
from datetime import date
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.zones.engines import get_engine
from zonesync.tasks.bookkeeping.ledger import batch_recorder, start_job
from zonesync.tasks.sync.run import Zones, sync_mapping_rows

intranet, internet = get_engine("intranet"), get_engine("internet")
entry, _lease = start_job(intranet, "retry-sync", date.today())
print(entry.id, flush=True)
slow = lambda result: time.sleep(0.05)  # gives the parent time to kill it mid-way
sync_mapping_rows(MERCHANTS, Zones(intranet, internet, intranet), 2, on_batch=slow, record=batch_recorder(entry.id))
"""


def job(engine: sa.Engine, job_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(batch_job).where(batch_job.c.id == job_id)).one()._mapping)


def test_a_killed_run_is_closed_as_aborted_with_exactly_the_rows_it_flagged(demo: ZonePair) -> None:
    seed(demo.intranet, "merchant", demo_data.merchants(60), ("merchant_id",))
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, env=os.environ)
    assert child.stdout is not None
    job_id = int(child.stdout.readline())
    deadline = time.monotonic() + 60
    while job(demo.intranet, job_id)["rows_synced"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()

    assert job(demo.intranet, job_id)["status"] == "RUNNING"
    closed = close_abandoned(get_engine("intranet"))

    row = job(demo.intranet, job_id)
    flagged = 60 - len(unflagged_keys(demo.intranet, MERCHANTS))
    assert len(closed) == 1 and row["status"] == "ABORTED" and row["finished_at"] is not None
    assert 0 < row["rows_synced"] == flagged < 60, "every row flagged is counted, and only those"
    assert close_abandoned(get_engine("intranet")) == []


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_whose_mapping_another_run_holds_says_skipped(demo: ZonePair) -> None:
    seed(demo.intranet, "merchant", demo_data.merchants(5), ("merchant_id",))
    other = Lease(get_engine("intranet"), mapping_lease("merchants"), 60)
    assert other.try_acquire()

    report = retry_sync(mappings=["merchants"])
    other.release()

    assert report["merchants"].status == "skipped"
    assert [r["status"] for r in rows(demo.intranet, "batch_job")] == ["SKIPPED"]


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_that_loses_its_lease_stops_with_an_error_that_keeps_its_counts(
    demo: ZonePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(demo.intranet, "merchant", demo_data.merchants(10), ("merchant_id",))
    monkeypatch.setenv("ZONESYNC_LEASE_SECONDS", "2")
    get_settings.cache_clear()

    def taken_over() -> None:  # the lease expired during a long wait, and another run took it
        time.sleep(0.3)  # the wait: longer than a tenth of the lease, after which a batch renews it
        execute(demo.intranet, "UPDATE sync_lease SET holder = 'elsewhere:1:x' WHERE name = 'mapping:merchants'")

    with interleaved("batch:read", taken_over):
        report = retry_sync(mappings=["merchants"], batch_size=4)

    result = report["merchants"]
    assert result.status == "error" and "lost the lease" in result.message
    assert result.flagged == 4 and result.read >= 4  # what it did before it noticed: not "skipped, read 0"
    (ledger,) = rows(demo.intranet, "batch_job")
    assert (ledger["status"], ledger["rows_synced"]) == ("PARTIAL", 4)


END_DAY_CHILD = """
from datetime import date
from zonesync.schemas.examples import PAYMENTS
from zonesync.tasks.zones.engines import get_engine
from zonesync.tasks.bookkeeping.ledger import batch_recorder, start_job
from zonesync.tasks.sync.run import Zones, sync_mapping_rows

intranet, internet = get_engine("intranet"), get_engine("internet")
entry, _lease = start_job(intranet, "end-day-check", date.today())
sync_mapping_rows(PAYMENTS, Zones(internet, intranet, intranet), 1000, record=batch_recorder(entry.id))
"""


def test_an_end_day_batch_killed_between_its_two_commits_is_counted_once(demo: ZonePair) -> None:
    """The intranet zone is the target here: each batch is counted in the transaction that writes it there, as
    rows inserted or changed — so the run that sends them again (unflagged by the kill) does not count them."""
    seed(demo.internet, "payment", demo_data.payments(40), ("payment_id",))
    env = os.environ | {"ZONESYNC_FAULT": "batch:delivered"}  # killed after the intranet commit, before the flags
    assert subprocess.run([sys.executable, "-c", END_DAY_CHILD], env=env, check=False).returncode == 70
    assert unflagged_keys(demo.internet, PAYMENTS) == set(source_rows(demo.internet, PAYMENTS))  # none flagged
    close_abandoned(get_engine("intranet"))

    entry, lease = start_job(get_engine("intranet"), "end-day-check", date.today())
    zones = Zones(demo.internet, demo.intranet, demo.intranet)
    sync_mapping_rows(PAYMENTS, zones, 1000, record=batch_recorder(entry.id))
    lease.release()

    jobs = rows(demo.intranet, "batch_job")
    flagged = len(source_rows(demo.internet, PAYMENTS)) - len(unflagged_keys(demo.internet, PAYMENTS))
    assert flagged > 0 and [job["rows_synced"] for job in jobs] == [flagged, 0]


FINISHING_CHILD = """
from datetime import date
from zonesync.tasks.zones.engines import get_engine
from zonesync.tasks.bookkeeping.ledger import job_ledger

with job_ledger(get_engine("intranet"), "retry-sync", date.today()) as entry:
    entry.status = "SUCCESS"
"""


def test_a_run_killed_while_writing_its_final_status_leaves_no_lease_behind(demo: ZonePair) -> None:
    """The final status and the release of the row's lease commit together: a kill between them leaves the row
    RUNNING with its lease, which the next run closes — never a finished row whose lease nobody frees."""
    env = os.environ | {"ZONESYNC_FAULT": "ledger:closing"}
    assert subprocess.run([sys.executable, "-c", FINISHING_CHILD], env=env, check=False).returncode == 70
    assert [job["status"] for job in rows(demo.intranet, "batch_job")] == ["RUNNING"]

    closed = close_abandoned(get_engine("intranet"))

    assert len(closed) == 1 and [job["status"] for job in rows(demo.intranet, "batch_job")] == ["ABORTED"]
    assert rows(demo.intranet, "sync_lease") == []


@pytest.mark.usefixtures("prefect_harness")
def test_counts_add_up_over_the_attempts_of_a_task_prefect_retries(demo: ZonePair) -> None:
    """A transient failure in the second batch: Prefect runs the task again, which sends the rest."""
    seed(demo.intranet, "merchant", demo_data.merchants(10), ("merchant_id",))  # all ten valid

    def connection_lost() -> None:
        raise TransientSyncError("connection to the internet zone lost (injected)")

    with interleaved("batch:delivered", connection_lost, at=2):
        report = retry_sync(mappings=["merchants"], batch_size=4)

    result = report["merchants"]
    assert result.status == "success" and result.flagged == 10  # 4 in the first attempt, 6 in the second
    (ledger,) = rows(demo.intranet, "batch_job")
    assert (ledger["status"], ledger["rows_synced"]) == ("SUCCESS", 10)


def test_rows_another_run_carried_while_this_one_stalled_are_counted_by_that_run_only(demo: ZonePair) -> None:
    """A run reads a batch and stalls (its lease expires); another run carries the same rows, unchanged. When the
    first wakes, its claim finds them flagged with the values it read and sends them again, harmlessly: the ledger
    counts them once, in the run that flagged them."""
    seed(demo.intranet, "merchant", demo_data.merchants(8), ("merchant_id",))
    intranet = get_engine("intranet")
    zones = Zones(intranet, get_engine("internet"), intranet)
    stalled, other = (start_job(intranet, "retry-sync", date.today())[0] for _ in range(2))

    def the_other_run_meanwhile() -> None:
        done = sync_mapping_rows(MERCHANTS, zones, 8, record=batch_recorder(other.id))
        assert done.flagged == 8

    with interleaved("batch:read", the_other_run_meanwhile):
        woken = sync_mapping_rows(MERCHANTS, zones, 8, record=batch_recorder(stalled.id))

    assert (woken.upserted, woken.flagged) == (8, 0)  # sent again, flagged by the other run
    synced = {row["id"]: row["rows_synced"] for row in rows(demo.intranet, "batch_job")}
    assert (synced[stalled.id], synced[other.id]) == (0, 8)
