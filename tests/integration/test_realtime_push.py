"""The real-time push on every backend: where each record is after success and after each failure.

Success: in the source with its flag true and in the target with the mapped values. Refused by the source:
written nowhere. Refused or failed at the target: in the source with its flag false, recorded in sync_error,
result `pending` — and the cron retry carries it once the target takes it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import ZonePair, backend_param
from tests.integration.helpers import (
    REFUSE_FLAG,
    errors,
    execute,
    mapped,
    rows,
    source_rows,
    target_rows,
    unreachable_url,
)
from zonesync.flows.realtime_push import realtime_push
from zonesync.flows.retry_sync import retry_sync
from zonesync.schemas import settings
from zonesync.schemas.examples import MERCHANTS
from zonesync.tasks.push.pusher import Pusher, push_records
from zonesync.tasks.results import KeyOutcome, MappingSyncResult
from zonesync.tasks.sync.run import Zones, sync_mapping_rows
from zonesync.tasks.zones import engines

MERCHANT: dict[str, Any] = {
    "merchant_id": 1,
    "merchant_name": "Café Ünïcode 😀",
    "status": "A",
    "fee": "1234567890123456.78",
    "email": None,
    "tax_id": "NPWP-1",
    "updated_at": "2026-11-26T10:00:00.123456+07:00",
}


def test_a_pushed_record_is_in_both_zones_exactly_and_flagged(demo: ZonePair) -> None:
    result = push_records("merchants", [MERCHANT])

    assert (result.status, result.stage) == ("success", None)
    assert result.outcomes == [KeyOutcome({"merchant_id": 1}, "success")]
    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert source["__flag"] is True
    assert target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source)
    assert source["fee"] == Decimal("1234567890123456.78")
    assert source["updated_at"] == datetime(2026, 11, 26, 3, 0, 0, 123456, tzinfo=UTC)
    assert source["name"] == "Café Ünïcode 😀" and source["email"] is None


def test_a_record_the_source_refuses_is_written_nowhere(demo: ZonePair) -> None:
    push_records("merchants", [MERCHANT])

    result = push_records("merchants", [{**MERCHANT, "merchant_name": "Someone else"}])

    assert (result.status, result.stage, result.reason) == ("error", "source", "duplicate_key")
    assert [o.status for o in result.outcomes] == ["error"]
    assert target_rows(demo.internet, MERCHANTS)[(1,)]["name"] == MERCHANT["merchant_name"]
    assert errors(demo.intranet) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"colour": "red"}, "unknown_column"),
        ({"merchant_id": "seven"}, "invalid_value"),
        ({"fee": "1.234"}, "invalid_value"),  # would be rounded by numeric(18,2): refused instead
        ({"updated_at": "yesterday"}, "invalid_value"),
        ({"merchant_id": None}, "missing_required"),
        ({"is_sync": True}, "unknown_column"),  # the flag is zonesync's, not the caller's
    ],
)
def test_bad_records_are_refused_before_anything_is_written(
    demo: ZonePair, change: dict[str, Any], reason: str
) -> None:
    good = {**MERCHANT, "merchant_id": 2}

    result = push_records("merchants", [good, {**MERCHANT, **change}])

    assert (result.status, result.stage, result.reason) == ("error", "source", reason)
    assert "record 2" in result.message
    assert rows(demo.intranet, "merchant") == [] and rows(demo.internet, "merchant") == []


def test_a_missing_required_column_is_refused_by_the_source(demo: ZonePair) -> None:
    record = {name: value for name, value in MERCHANT.items() if name != "merchant_name"}

    result = push_records("merchants", [record])

    assert (result.status, result.reason) == ("error", "missing_required")
    assert rows(demo.intranet, "merchant") == []


def test_a_record_the_target_model_rejects_is_pending_and_quarantined(demo: ZonePair) -> None:
    result = push_records("merchants", [{**MERCHANT, "merchant_id": 2}, {**MERCHANT, "merchant_id": 3, "status": "X"}])

    assert (result.status, result.stage) == ("pending", "target")
    assert [(o.key, o.status, o.reason) for o in result.outcomes] == [
        ({"merchant_id": 2}, "success", ""),
        ({"merchant_id": 3}, "pending", "validation"),
    ]
    assert "status" in result.outcomes[1].detail
    assert source_rows(demo.intranet, MERCHANTS)[(3,)]["__flag"] is False
    assert list(target_rows(demo.internet, MERCHANTS)) == [(2,)]
    assert [(e["key"], e["reason"]) for e in errors(demo.intranet, open_only=True)] == [
        ({"merchant_id": 3}, "validation")
    ]


def _point_internet_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("ZONESYNC_INTERNET_URL", url)
    settings.get_settings.cache_clear()
    engines.dispose_engines()


@pytest.mark.usefixtures("prefect_harness")
def test_target_down_leaves_records_pending_and_the_cron_retry_carries_them(
    demo: ZonePair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _point_internet_at(monkeypatch, unreachable_url(demo.internet_backend, tmp_path))

    result = push_records("merchants", [MERCHANT])

    assert (result.status, result.stage, result.reason) == ("pending", "target", "target_error")
    assert "secret-pw" not in result.message
    assert source_rows(demo.intranet, MERCHANTS)[(1,)]["__flag"] is False
    assert [e["reason"] for e in errors(demo.intranet, open_only=True)] == ["target_error"]

    _point_internet_at(monkeypatch, demo.internet_url)
    report = retry_sync()

    assert report["merchants"].flagged == 1
    source = source_rows(demo.intranet, MERCHANTS)[(1,)]
    assert source["__flag"] is True and target_rows(demo.internet, MERCHANTS)[(1,)] == mapped(source)
    assert errors(demo.intranet, open_only=True) == []
    assert errors(demo.intranet)[0]["resolved_at"] is not None


@pytest.mark.usefixtures("prefect_harness")
def test_the_realtime_push_flow_returns_the_result_per_key(demo: ZonePair) -> None:
    result = realtime_push("merchants", [MERCHANT, {**MERCHANT, "merchant_id": 2, "status": "X"}])

    assert result.status == "pending"
    assert result.keys == [{"merchant_id": 1}, {"merchant_id": 2}]
    assert [o.status for o in result.outcomes] == ["success", "pending"]


def test_a_failed_flag_patch_leaves_the_record_pending_until_the_retry_flags_it(
    demo: ZonePair, caplog: pytest.LogCaptureFixture
) -> None:
    for statement in REFUSE_FLAG[demo.intranet_backend]:
        execute(demo.intranet, statement)

    result = push_records("merchants", [MERCHANT])

    assert (result.status, result.stage, result.reason) == ("pending", "flag", "not_flagged")
    assert "the database refused it" in result.message and "flag refused" not in result.message  # the database's own
    assert "flag refused" in caplog.text  # words go to the log, not to the caller
    assert source_rows(demo.intranet, MERCHANTS)[(1,)]["__flag"] is False
    assert target_rows(demo.internet, MERCHANTS) == {}  # rows are claimed (flagged) before they are written

    execute(
        demo.intranet, "DROP TRIGGER refuse_flag" + (" ON merchant" if demo.intranet_backend == "postgresql" else "")
    )
    retried = sync_mapping_rows(MERCHANTS, Zones(demo.intranet, demo.internet, demo.intranet), batch_size=10)

    assert (retried.read, retried.flagged) == (1, 1)
    assert source_rows(demo.intranet, MERCHANTS)[(1,)]["__flag"] is True


def test_pushes_racing_retry_syncs_never_double_apply_flag_wrongly_or_deadlock(demo: ZonePair) -> None:
    """No double apply: the retry reads rows a push has inserted but not yet flagged, and both write them."""
    stop = threading.Event()
    retries: list[MappingSyncResult] = []
    crashes: list[BaseException] = []

    def retry_until_stopped() -> None:
        try:
            while not stop.is_set():
                retries.append(sync_mapping_rows(MERCHANTS, Zones(demo.intranet, demo.internet, demo.intranet), 5))
        except BaseException as exc:  # reported by the assertions below
            crashes.append(exc)

    retrier = threading.Thread(target=retry_until_stopped)
    retrier.start()
    try:
        pushes = [push_records("merchants", [{**MERCHANT, "merchant_id": key}]) for key in range(1, 81)]
    finally:
        stop.set()
        retrier.join(timeout=120)

    assert not retrier.is_alive(), "the retry sync did not finish: deadlock"
    assert crashes == []
    assert [push.status for push in pushes] == ["success"] * 80
    assert retries and all(r.status != "error" for r in retries)
    # A row the push flagged (same values) while a retry held it read is sent again by the retry, not counted by it.
    assert all(r.flagged <= r.upserted for r in retries)
    assert sum(r.flagged for r in retries) <= 80  # each row flagged once: by a retry, or by its push
    source = source_rows(demo.intranet, MERCHANTS)
    assert len(source) == 80 and all(row["__flag"] for row in source.values())
    assert target_rows(demo.internet, MERCHANTS) == {key: mapped(row) for key, row in source.items()}
    assert errors(demo.intranet) == []


def test_requests_pushed_together_each_get_the_answer_they_would_get_alone(demo: ZonePair) -> None:
    """Coalesced requests (the HTTP API's micro-batches): one source transaction, or each alone if it fails."""
    push_records("merchants", [{**MERCHANT, "merchant_id": 5}])
    requests: list[object] = [
        [{**MERCHANT, "merchant_id": 1}],
        [{**MERCHANT, "merchant_id": 2, "status": "X"}, {**MERCHANT, "merchant_id": 3, "email": "a@example.com"}],
        [{**MERCHANT, "merchant_id": 5, "merchant_name": "Duplicate"}],  # the source refuses: the others land
        [{**MERCHANT, "merchant_id": 6, "fee": "1.234"}],  # refused before anything is written
        [{"merchant_id": 1, **{k: v for k, v in MERCHANT.items() if k != "merchant_id"}, "status": "I"}],  # key again
        [{**MERCHANT, "merchant_id": 7, "email": None}, {**MERCHANT, "merchant_id": 8, "email": "b@example.com"}],
    ]

    results = Pusher(MERCHANTS).push_many(requests)

    assert [(r.status, r.stage, r.reason) for r in results] == [
        ("success", None, ""),
        ("pending", "target", "validation"),
        ("error", "source", "duplicate_key"),
        ("error", "source", "invalid_value"),
        ("error", "source", "duplicate_key"),  # pushed after the first request with key 1, as if alone
        ("success", None, ""),
    ]
    assert [[(o.key["merchant_id"], o.status) for o in r.outcomes] for r in results] == [
        [(1, "success")], [(2, "pending"), (3, "success")], [(5, "error")], [(6, "error")], [(1, "error")],
        [(7, "success"), (8, "success")],
    ]  # fmt: skip
    source = source_rows(demo.intranet, MERCHANTS)
    assert sorted(source) == [(1,), (2,), (3,), (5,), (7,), (8,)]
    assert {key for key, row in source.items() if row["__flag"]} == {(1,), (3,), (5,), (7,), (8,)}
    assert source[(1,)]["status"] == "A" and source[(5,)]["name"] == MERCHANT["merchant_name"]
    target = target_rows(demo.internet, MERCHANTS)
    assert target == {key: mapped(row) for key, row in source.items() if row["__flag"]}
    assert [(e["key"], e["reason"]) for e in errors(demo.intranet, open_only=True)] == [
        ({"merchant_id": 2}, "validation")
    ]


def test_records_of_different_shapes_are_answered_in_the_order_sent(demo: ZonePair) -> None:
    with_email = {**MERCHANT, "email": "c@example.com"}
    without_email = {k: v for k, v in MERCHANT.items() if k != "email"}
    records = [{**with_email, "merchant_id": 1}, {**without_email, "merchant_id": 2}, {**with_email, "merchant_id": 3,
               "email": "d@example.com", "status": "X"}, {**without_email, "merchant_id": 4}]  # fmt: skip

    result = push_records("merchants", records)

    assert [(o.key["merchant_id"], o.status) for o in result.outcomes] == [
        (1, "success"), (2, "success"), (3, "pending"), (4, "success"),
    ]  # fmt: skip
    assert "status" in result.outcomes[2].detail


def _drop_other_connections(engine: Engine) -> None:
    """Server-side end of every other session on the database (a restart or an idle timeout, as the pool sees it)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        else:
            ids = conn.exec_driver_sql(
                "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            ).scalars()
            for session in list(ids):
                conn.exec_driver_sql(f"KILL {int(session)}")


@pytest.mark.parametrize("backend", [backend_param("postgresql"), backend_param("mariadb")])
def test_a_push_after_the_server_dropped_the_pooled_connections_succeeds(demo: ZonePair) -> None:
    """Connections used a moment ago are not pinged at checkout: a dead one fails before its commit and the
    transaction runs again on a new connection."""
    pusher = Pusher(MERCHANTS)
    assert pusher.push([{**MERCHANT, "merchant_id": 1}]).status == "success"
    _drop_other_connections(demo.intranet)
    _drop_other_connections(demo.internet)

    result = pusher.push([{**MERCHANT, "merchant_id": 2}])

    assert (result.status, [o.status for o in result.outcomes]) == ("success", ["success"])
    source = source_rows(demo.intranet, MERCHANTS)
    assert sorted(source) == [(1,), (2,)] and all(row["__flag"] for row in source.values())
    assert target_rows(demo.internet, MERCHANTS) == {key: mapped(row) for key, row in source.items()}
