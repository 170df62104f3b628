"""The writers' contract (docs/mappings.md): an application that changes a synced row resets its flag and moves its
version on. zonesync's own writes honour it, and `zonesync init --triggers` enforces it for applications that do not."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration.console import InProcessCli
from tests.integration.helpers import execute, mapped, rows, source_rows, sync, target_rows
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.push.pusher import push_records
from zonesync.tasks.setup.triggers import install_writers_trigger, writers_contract_enforced
from zonesync.tasks.update.rollback import update_record
from zonesync.tasks.zones.checkpoints import interleaved

MERCHANT: dict[str, Any] = {
    "merchant_id": 1, "merchant_name": "Toko", "status": "A", "fee": "1.00", "updated_at": "2026-11-26T10:00:00Z",
}  # fmt: skip
CARELESS = "UPDATE merchant SET fee = 9.99 WHERE merchant_id = 1"  # neither the flag nor the version


def stored_version(pair: ZonePair) -> Any:
    return rows(pair.intranet, "merchant")[0]["updated_at"]


def test_an_update_with_rollback_moves_the_version_column_on(demo: ZonePair) -> None:
    assert push_records("merchants", [MERCHANT]).status == "success"
    before = source_rows(demo.intranet, MERCHANTS)[(1,)]["updated_at"]

    assert update_record(MERCHANTS, {"merchant_id": 1}, {"fee": "2.00"}).status == "success"

    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert source["updated_at"] > before and source["__flag"]
    assert target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source)


def test_without_the_triggers_a_careless_application_change_is_never_sent(demo: ZonePair) -> None:
    """Why the contract matters (the behaviour the triggers exist to prevent)."""
    assert push_records("merchants", [MERCHANT]).status == "success"

    execute(demo.intranet, CARELESS)
    sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=10)

    assert target_rows(demo.internet, MERCHANTS)[(1,)]["fee"] == Decimal("1.00")


def test_the_triggers_reset_the_flag_and_move_the_version_of_a_careless_change(demo: ZonePair) -> None:
    assert push_records("merchants", [MERCHANT]).status == "success"
    install_writers_trigger(MERCHANTS, demo.intranet)
    version = stored_version(demo)

    execute(demo.intranet, CARELESS)

    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert not source["__flag"] and stored_version(demo) != version
    result = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=10)
    assert result.flagged == 1
    assert target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source_rows(demo.intranet, MERCHANTS)[(1,)])


def test_with_the_triggers_a_careless_change_in_flight_is_never_flagged(demo: ZonePair) -> None:
    execute(demo.intranet, "INSERT INTO merchant (merchant_id, merchant_name, status, fee, updated_at, is_sync) "
            "VALUES (1, 'Toko', 'A', '1.00', '2026-11-26 10:00:00', false)")  # fmt: skip
    install_writers_trigger(MERCHANTS, demo.intranet)

    with interleaved("batch:read", lambda: execute(demo.intranet, CARELESS)):
        first = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=10)
    second = sync(MERCHANTS, demo.intranet, demo.internet, demo.intranet, batch_size=10)

    assert (first.flagged, first.changed_in_flight, second.flagged) == (0, 1, 1)
    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert source["fee"] == Decimal("9.99") and target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source)


def test_zonesync_s_own_writes_pass_the_triggers_untouched(demo: ZonePair) -> None:
    install_writers_trigger(MERCHANTS, demo.intranet)
    install_writers_trigger(MERCHANTS, demo.intranet)  # idempotent

    assert push_records("merchants", [MERCHANT]).status == "success"
    assert update_record(MERCHANTS, {"merchant_id": 1}, {"merchant_name": "Toko Baru"}).status == "success"

    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert source["__flag"] and source["name"] == "Toko Baru"
    assert target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source)
    with demo.intranet.begin() as conn:  # a flag-only change (what claiming does) keeps the version
        version = stored_version(demo)
        conn.execute(sa.text("UPDATE merchant SET is_sync = false WHERE merchant_id = 1"))
    assert stored_version(demo) == version


def test_the_contract_counts_as_enforced_once_its_trigger_is_installed(demo: ZonePair) -> None:
    assert not writers_contract_enforced(MERCHANTS, demo.intranet)

    install_writers_trigger(MERCHANTS, demo.intranet)

    assert writers_contract_enforced(MERCHANTS, demo.intranet)


def test_init_says_when_the_contract_is_not_enforced_and_how_to_enforce_it(
    demo_zones: ZonePair, cli_in_process: InProcessCli
) -> None:
    first = cli_in_process("init")
    assert first.code == 0, str(first)
    said = " ".join(first.stdout.split())
    assert "writers' contract not enforced: no trigger on merchant: a row changed while is_sync stays true" in said
    assert "`zonesync init --triggers` enforces it" in said and "no trigger on payment" in said, said

    assert cli_in_process("init", "--triggers").code == 0

    again = " ".join(cli_in_process("init").stdout.split())
    assert "not enforced" not in again and "mapping merchants (intranet_to_internet): ok" in again, again
