"""The delete with rollback (docs/deletes.md): the source row and its target copy go as one unit (the copy by the
mapping's on_delete), or neither does, with two-phase commit where both databases offer it and the intent record
elsewhere; a process killed at each step leaves what `zonesync recover` repairs: the row in both zones, or in
neither."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.conftest import ZonePair, backend_param
from tests.integration.console import Cli
from tests.integration.helpers import execute, rows, seed, source_rows, sync, target_rows
from zonesync.schemas import settings
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.setup import demo_data
from zonesync.tasks.setup.triggers import install_delete_capture
from zonesync.tasks.update.deletion import delete_record

KEY = {"merchant_id": 2}


def synced(pair: ZonePair, *, capture: bool = True) -> None:
    seed(pair.intranet, "merchant", demo_data.merchants(3), ("merchant_id",))
    assert sync(MERCHANTS, pair.intranet, pair.internet, pair.intranet, batch_size=10).flagged == 3
    if capture:
        install_delete_capture(MERCHANTS, pair.intranet)


def two_phase(monkeypatch: pytest.MonkeyPatch, enabled: bool) -> None:
    monkeypatch.setenv("ZONESYNC_TWO_PHASE", "true" if enabled else "false")
    settings.get_settings.cache_clear()


def keys(engine: Any, table: str) -> list[int]:
    return sorted(row["merchant_id"] for row in rows(engine, table))


@pytest.mark.parametrize("with_two_phase", [True, False], ids=["two-phase", "intent"])
def test_a_delete_removes_the_row_from_both_zones_on_every_pairing(
    demo_pair: ZonePair, monkeypatch: pytest.MonkeyPatch, with_two_phase: bool
) -> None:
    two_phase(monkeypatch, with_two_phase)
    synced(demo_pair)

    result = delete_record(MERCHANTS, KEY)

    assert (result.status, result.message) == ("success", "deleted in the source, archived in the target")
    assert keys(demo_pair.intranet, "merchant") == [1, 3] and keys(demo_pair.internet, "merchant") == [1, 3]
    assert keys(demo_pair.internet, "merchant_archive") == [2]
    # Its tombstone (the capture fired on the DELETE) finds the copy gone: nothing done twice.
    carried = sync(MERCHANTS, demo_pair.intranet, demo_pair.internet, demo_pair.intranet, batch_size=10)
    assert (carried.deletes_applied, keys(demo_pair.internet, "merchant_archive")) == (1, [2])
    assert [row["outcome"] for row in rows(demo_pair.intranet, "sync_tombstone")] == ["absent"]


@pytest.mark.parametrize("with_two_phase", [True, False], ids=["two-phase", "intent"])
def test_a_delete_the_target_refuses_leaves_the_row_in_both_zones(
    demo: ZonePair, monkeypatch: pytest.MonkeyPatch, with_two_phase: bool
) -> None:
    two_phase(monkeypatch, with_two_phase)
    synced(demo)
    later = "2099-01-01 00:00:00" + ("+00" if demo.internet_backend == "postgresql" else "")
    execute(demo.internet, "UPDATE merchant SET updated_at = :later WHERE merchant_id = 2", {"later": later})

    result = delete_record(MERCHANTS, KEY)

    assert (result.status, result.reason) == ("error", "delete_conflict"), result
    assert keys(demo.intranet, "merchant") == [1, 2, 3] and keys(demo.internet, "merchant") == [1, 2, 3]
    assert rows(demo.intranet, "sync_tombstone") == []  # rolled back with the source's DELETE
    assert rows(demo.internet, "merchant_archive") == []
    assert [row["state"] for row in rows(demo.intranet, "sync_intent")] == ["rolled_back"]


def test_a_mapping_that_ignores_deletes_deletes_nothing(demo: ZonePair) -> None:
    synced(demo, capture=False)

    result = delete_record(dataclasses.replace(MERCHANTS, on_delete="ignore"), KEY)

    assert (result.status, result.reason) == ("error", "not_carried")
    assert keys(demo.intranet, "merchant") == [1, 2, 3]


def test_a_missing_row_is_not_found(demo: ZonePair) -> None:
    synced(demo, capture=False)
    assert delete_record(MERCHANTS, {"merchant_id": 99}).reason == "not_found"
    assert delete_record(MERCHANTS, {"merchant": 2}).reason == "missing_required"


INTENT_DRILLS = {  # a process killed here, then `zonesync recover`: the row in both zones, or in neither
    "delete:flag-cleared": "kept",
    "delete:source-deleted": "kept",
    "delete:target-deleted": "kept",  # the target's copy went, the source's DELETE had not committed: restored
    "delete:committed": "gone",
}
TWO_PHASE_DRILLS = {"delete:undecided": "kept", "delete:prepared": "gone"}  # prepared: the decision recorded


def drill(pair: ZonePair, cli: Cli, fault: str, ends: str, *, with_two_phase: bool) -> None:
    synced(pair)
    before = target_rows(pair.internet, MERCHANTS)[(2,)]

    killed = cli("delete", "merchants", "--key", '{"merchant_id": 2}', ZONESYNC_FAULT=fault,
                 ZONESYNC_TWO_PHASE="true" if with_two_phase else "false")  # fmt: skip
    recovered = cli("recover")

    assert killed.code == 70, killed
    assert recovered.code == 0, recovered
    if ends == "kept":
        assert keys(pair.intranet, "merchant") == [1, 2, 3] and keys(pair.internet, "merchant") == [1, 2, 3]
        assert target_rows(pair.internet, MERCHANTS)[(2,)] == before  # restored byte for byte
        assert source_rows(pair.intranet, MERCHANTS)[(2,)]["__flag"]
        assert rows(pair.internet, "merchant_archive") == []  # the copy archived by a delete rolled back: gone
    else:
        assert keys(pair.intranet, "merchant") == [1, 3] and keys(pair.internet, "merchant") == [1, 3]
        assert keys(pair.internet, "merchant_archive") == [2]
    assert [row["state"] for row in rows(pair.intranet, "sync_intent") if not row["finished_at"]] == []


@pytest.mark.parametrize(("fault", "ends"), INTENT_DRILLS.items())
def test_a_delete_killed_at_each_step_is_repaired_by_recover(demo: ZonePair, flow_cli: Cli, fault: str,
                                                             ends: str) -> None:  # fmt: skip
    drill(demo, flow_cli, fault, ends, with_two_phase=False)


@pytest.mark.parametrize("backend", [backend_param("postgresql"), backend_param("mariadb")])
@pytest.mark.parametrize(("fault", "ends"), TWO_PHASE_DRILLS.items())
def test_a_two_phase_delete_killed_at_each_step_is_repaired_by_recover(demo: ZonePair, flow_cli: Cli, fault: str,
                                                                       ends: str) -> None:  # fmt: skip
    drill(demo, flow_cli, fault, ends, with_two_phase=True)
