"""Never flagged wrongly, whatever the timing (docs/guarantees.md, 2 and 9): a writer that is slow rather than dead —
paused by a GC, a lock or the network — can never put an older value into the other zone over a newer one.

Each test pauses one writer at a named checkpoint and lets another writer run its whole course there, on every
backend; then both zones must agree on every flagged row.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration.helpers import execute, mapped, source_rows, sync, target_rows
from tests.integration.mappings import NOTES
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.bookkeeping.tables import sync_lease
from zonesync.tasks.push.pusher import push_records
from zonesync.tasks.update.recovery import recover_intents
from zonesync.tasks.update.rollback import update_record
from zonesync.tasks.zones.checkpoints import interleaved
from zonesync.tasks.zones.engines import get_engine

MERCHANT: dict[str, Any] = {
    "merchant_id": 1, "merchant_name": "Toko", "status": "A", "fee": "1.00", "updated_at": "2026-11-26T10:00:00Z",
}  # fmt: skip
KEY = {"merchant_id": 1}


def agree(pair: ZonePair) -> dict[str, Any]:
    """The merchant's source row, after checking that, if flagged, the target holds exactly its values."""
    source = source_rows(pair.intranet, MERCHANTS)[(1,)]
    if source["__flag"]:
        assert target_rows(pair.internet, MERCHANTS).get((1,)) == mapped(source), "flagged, but the zones differ"
    return source


def test_a_push_paused_before_its_target_write_never_overwrites_a_newer_update(demo: ZonePair) -> None:
    def update_meanwhile() -> None:
        result = update_record(MERCHANTS, KEY, {"fee": "77.77"})
        assert result.status == "success", result.message

    with interleaved("push:inserted", update_meanwhile):
        pushed = push_records("merchants", [MERCHANT])

    source = agree(demo)
    assert source["fee"] == Decimal("77.77") and source["__flag"]
    assert pushed.outcomes[0].status == "pending" and pushed.outcomes[0].reason == "changed_in_flight"


def test_a_push_paused_before_its_target_write_never_overwrites_a_change_the_retry_carried(demo: ZonePair) -> None:
    def change_and_retry_meanwhile() -> None:
        execute(demo.intranet, "UPDATE merchant SET fee = 5.55, updated_at = '2026-11-27 10:00:00', is_sync = false "
                "WHERE merchant_id = 1")  # as the writers' contract says: flag reset, version bumped  # fmt: skip
        result = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=10)
        assert result.flagged == 1

    with interleaved("push:inserted", change_and_retry_meanwhile):
        push_records("merchants", [MERCHANT])

    source = agree(demo)
    assert source["fee"] == Decimal("5.55") and source["__flag"]


def test_a_retry_batch_overtaken_by_an_update_never_writes_its_stale_copy(demo: ZonePair) -> None:
    """The batch has read the row; an update (as after the batch lost its lease) writes and flags a newer one."""
    execute(demo.intranet, "INSERT INTO merchant (merchant_id, merchant_name, status, fee, updated_at, is_sync) "
            "VALUES (1, 'Toko', 'A', '1.00', '2026-11-26 10:00:00', false)")  # fmt: skip

    def update_meanwhile() -> None:
        result = update_record(MERCHANTS, KEY, {"fee": "77.77"})
        assert result.status == "success", result.message

    with interleaved("batch:read", update_meanwhile):
        result = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=10)

    source = agree(demo)
    assert source["fee"] == Decimal("77.77") and source["__flag"]
    assert (result.read, result.flagged, result.changed_in_flight) == (1, 0, 1)


def test_recover_never_undoes_an_update_that_is_still_running(synced: ZonePair) -> None:
    """The update is paused long enough to lose its lease; `recover` runs meanwhile; the update then goes on."""

    def recover_meanwhile() -> None:
        execute(synced.intranet, sa.delete(sync_lease))  # the paused update's lease has expired
        recover_intents(get_engine("intranet"))

    with interleaved("update:flag-cleared", recover_meanwhile):
        result = update_record(MERCHANTS, KEY, {"fee": "77.77"})

    source = agree(synced)
    assert source["__flag"] and result.status == "success" and source["fee"] == Decimal("77.77")
    assert recover_intents(get_engine("intranet")) == []


@pytest.mark.parametrize("change", ["trailing blank", "case"])
def test_a_change_that_a_collation_calls_equal_is_still_a_change(zones: ZonePair, use_zones: Any, change: str) -> None:
    """Without a version column the guard compares values: byte for byte, not by the column's collation
    (MariaDB pads and folds case in its default collations, SQLite's NOCASE folds case)."""
    from tests.integration.tables import case_insensitive_note_tables

    source, target = case_insensitive_note_tables()
    source.create_all(zones.intranet)
    target.create_all(zones.internet)
    use_zones(zones)
    execute(zones.intranet, "INSERT INTO zs_note_src (note_key, body, is_sync) VALUES ('k', 'Hello', false)")
    changed = "Hello " if change == "trailing blank" else "HELLO"

    def change_meanwhile() -> None:
        execute(zones.intranet, sa.text("UPDATE zs_note_src SET body = :b, is_sync = false"), {"b": changed})

    with interleaved("batch:read", change_meanwhile):
        result = sync(NOTES, zones.intranet, zones.internet, zones.intranet, batch_size=10)

    flagged = source_rows(zones.intranet, NOTES)[("k",)]["__flag"]
    assert (result.flagged, flagged) == (0, False), "a row changed in flight was flagged"
