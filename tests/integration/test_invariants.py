"""The guarantees on each backend, through the real sync engine (`tasks.sync.sync_mapping_rows`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest
import sqlalchemy as sa

from tests.conftest import ZonePair
from tests.integration import data
from tests.integration.helpers import (
    assert_nothing_lost,
    create,
    errors,
    errors_by_key,
    execute,
    flag_value,
    normalize,
    reasons,
    reflect,
    rows,
    seed,
    source_rows,
    sync,
    target_rows,
    timestamp_literal,
    unflagged_keys,
)
from tests.integration.mappings import EXACT_VALUES, NOTES, ORDER_LINES, TICKETS
from tests.integration.tables import collated_note_tables, loose_merchant_source, source_tables, target_tables
from zonesync.schemas.examples import MERCHANTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.results import MappingSyncResult
from zonesync.tasks.setup import demo_data
from zonesync.tasks.sync.run import PHASE_HOOK
from zonesync.tasks.zones.checkpoints import interleaved


def _order_lines(pair: ZonePair, *, refused: bool = False) -> set[tuple[object, ...]]:
    create(pair.intranet, source_tables(), "zs_order_line_src")
    create(pair.internet, target_tables(), "zs_order_line")
    seed(pair.intranet, "zs_order_line_src", data.order_lines(refused=refused), ("order_ref", "line_no"))
    return unflagged_keys(pair.intranet, ORDER_LINES)


def _sync(mapping: SyncMapping, pair: ZonePair, batch_size: int = 7) -> MappingSyncResult:
    return sync(mapping, pair.intranet, pair.internet, pair.intranet, batch_size)


def test_the_phase_hook_sees_every_step_of_a_sync(zones: ZonePair) -> None:
    """PHASE_HOOK (how the benchmarks measure the steps from outside the engine) wraps each step of each batch."""
    _order_lines(zones)
    seen: list[str] = []

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        seen.append(name)
        yield

    hooked = PHASE_HOOK.set(phase)
    try:
        result = _sync(ORDER_LINES, zones)
    finally:
        PHASE_HOOK.reset(hooked)

    assert result.batches > 1
    assert {"read", "transform", "flag", "upsert", "quarantine"} <= set(seen)
    assert seen.count("transform") == result.batches


# -- invariant 5: bad rows never block good rows ---------------------------------------------------------------
def test_bad_rows_in_a_batch_do_not_block_the_good_ones(zones: ZonePair) -> None:
    """One batch holding invalid rows and a lossy value still lands every valid row of that batch."""
    pending = _order_lines(zones)

    result = _sync(ORDER_LINES, zones, batch_size=100)

    assert result.batches == 1, result.message
    assert result.status == "partial", result.message
    synced, _ = assert_nothing_lost(ORDER_LINES, zones.intranet, zones.internet, zones.intranet, pending)
    assert synced == pending - set(data.BAD_ORDER_LINES)
    assert reasons(zones.intranet, ORDER_LINES) == data.BAD_ORDER_LINES
    assert result.upserted == result.flagged == len(synced)
    assert result.quarantined == len(data.BAD_ORDER_LINES)


def test_rows_the_target_check_refuses_are_quarantined_as_constraint(zones: ZonePair) -> None:
    """Rows the target's CHECK constraint refuses are isolated and quarantined ('constraint'); the rest of their
    batch and the following batches land."""
    pending = _order_lines(zones, refused=True)

    result = _sync(ORDER_LINES, zones, batch_size=100)

    expected_bad = {**data.BAD_ORDER_LINES, **data.REFUSED_ORDER_LINES}
    assert result.status == "partial", result.message
    synced, _ = assert_nothing_lost(ORDER_LINES, zones.intranet, zones.internet, zones.intranet, pending)
    assert synced == pending - set(expected_bad)
    assert reasons(zones.intranet, ORDER_LINES) == expected_bad
    for key in data.REFUSED_ORDER_LINES:
        assert "ck_zs_order_line_sku" in errors_by_key(zones.intranet, ORDER_LINES)[key]["detail"]


def test_value_the_target_column_cannot_hold_is_quarantined(zones: ZonePair, backend: str) -> None:
    """A sku that fits the model (20) but not the live target column (varchar 8) is found before any write and
    quarantined as type_loss, the rest landing; SQLite does not enforce lengths and stores it."""
    pending = _order_lines(zones)
    too_long = ("ORD-001", 1)
    execute(
        zones.intranet,
        "UPDATE zs_order_line_src SET sku = 'SKU-TOO-LONG-1' WHERE order_ref = 'ORD-001' AND line_no = 1",
    )

    result = _sync(ORDER_LINES, zones, batch_size=100)

    expected_bad = dict(data.BAD_ORDER_LINES)
    if backend != "sqlite":
        expected_bad[too_long] = "type_loss"
    assert result.status == "partial", result.message
    synced, _ = assert_nothing_lost(ORDER_LINES, zones.intranet, zones.internet, zones.intranet, pending)
    assert synced == pending - set(expected_bad)
    assert reasons(zones.intranet, ORDER_LINES) == expected_bad


# -- invariant 2: never flagged wrongly ------------------------------------------------------------------------
CHANGED_NOTES = {  # note key -> (column, SQL value) another writer sets after the engine has read the row
    "b": ("body", "'changed while in flight'"),
    "c": ("amount", "'5.00'"),  # NULL -> value
    "e": ("body", "NULL"),  # value -> NULL
}
MICROSECOND_NOTE = "d"  # noted_at moves by one microsecond


def _note_changes(engine: sa.Engine) -> list[str]:
    changes = [
        f"UPDATE zs_note_src SET {column} = {value} WHERE note_key = '{key}'"
        for key, (column, value) in CHANGED_NOTES.items()
    ]
    noted_at = source_rows(engine, NOTES)[(MICROSECOND_NOTE,)]["noted_at"]
    later = timestamp_literal(engine, noted_at + timedelta(microseconds=1))
    return [*changes, f"UPDATE zs_note_src SET noted_at = {later} WHERE note_key = '{MICROSECOND_NOTE}'"]


ORDER_LINE_CHANGES = [
    "UPDATE zs_order_line_src SET qty_ordered = 99, revision = revision + 1 WHERE order_ref = 'ORD-003' AND line_no = 2"
]


@pytest.mark.parametrize(
    ("mapping", "changed"),
    [
        pytest.param(NOTES, {(k,) for k in [*CHANGED_NOTES, MICROSECOND_NOTE]}, id="values-compared"),
        pytest.param(ORDER_LINES, {("ORD-003", 2)}, id="version-column"),
    ],
)
def test_row_changed_in_flight_stays_unflagged_and_is_sent_next_run(
    zones: ZonePair, mapping: SyncMapping, changed: set[tuple[object, ...]]
) -> None:
    """A source row updated after it was read is neither written to the target with the values read nor flagged;
    the next run sends the new values and flags it."""
    source, target = zones.intranet, zones.internet
    create(source, source_tables(), mapping.source_table)
    create(target, target_tables(), mapping.target_table)
    if mapping is NOTES:
        seed(source, "zs_note_src", data.notes(list("abcdefgh")), ("note_key",))
        changes = _note_changes(source)
    else:
        seed(source, "zs_order_line_src", data.order_lines(), ("order_ref", "line_no"))
        changes = ORDER_LINE_CHANGES
    pending = unflagged_keys(source, mapping)

    with interleaved("batch:read", lambda: [execute(source, change) for change in changes]):
        first = sync(mapping, source, target, source, batch_size=100)

    sources, targets = source_rows(source, mapping), target_rows(target, mapping)
    for key in changed:
        assert not sources[key]["__flag"], f"{key} changed after it was read but was flagged synced"
        assert key not in targets, f"{key}: sent with the values read, which the source no longer holds"
    assert first.changed_in_flight == len(changed)
    assert first.flagged == first.upserted
    assert not changed & set(errors_by_key(source, mapping)), "a row changed in flight is not an error"

    second = sync(mapping, source, target, source, batch_size=100)

    synced, _ = assert_nothing_lost(mapping, source, target, source, pending)
    assert changed <= synced
    assert second.upserted == second.flagged == len(changed)
    assert second.changed_in_flight == 0


# -- idempotency, quarantine lifecycle ------------------------------------------------------------------------
def test_second_run_changes_nothing(zones: ZonePair) -> None:
    """Running again reads only the quarantined rows, writes nothing and leaves both zones as they were."""
    _order_lines(zones)
    first = _sync(ORDER_LINES, zones)
    target_before, source_before = rows(zones.internet, "zs_order_line"), rows(zones.intranet, "zs_order_line_src")

    second = _sync(ORDER_LINES, zones)

    bad = len(data.BAD_ORDER_LINES)
    assert first.upserted > 0
    assert (second.read, second.upserted, second.flagged, second.quarantined) == (bad, 0, 0, bad)
    assert second.status == "partial"
    assert rows(zones.internet, "zs_order_line") == target_before
    assert rows(zones.intranet, "zs_order_line_src") == source_before
    assert [row["attempts"] for row in errors(zones.intranet, "order_lines")] == [2] * bad


def test_fixed_rows_sync_resolve_and_reopen(zones: ZonePair) -> None:
    """A quarantined row fixed in the source syncs next run and its sync_error row is resolved (kept, not
    deleted); a row still bad counts another attempt; a resolved row that breaks again reopens."""
    pending = _order_lines(zones)
    _sync(ORDER_LINES, zones)
    fixed_qty, fixed_price, still_bad = ("ORD-002", 2), ("ORD-004", 2), ("ORD-003", 1)
    execute(zones.intranet, "UPDATE zs_order_line_src SET qty_ordered = 3, revision = revision + 1 "
            "WHERE order_ref = 'ORD-002' AND line_no = 2")  # fmt: skip
    execute(zones.intranet, "UPDATE zs_order_line_src SET price = '12.35', revision = revision + 1 "
            "WHERE order_ref = 'ORD-004' AND line_no = 2")  # fmt: skip

    second = _sync(ORDER_LINES, zones)

    assert (second.upserted, second.flagged) == (2, 2)
    synced, quarantined = assert_nothing_lost(ORDER_LINES, zones.intranet, zones.internet, zones.intranet, pending)
    assert {fixed_qty, fixed_price} <= synced
    assert target_rows(zones.internet, ORDER_LINES)[fixed_price]["price"] == Decimal("12.35")
    history = errors_by_key(zones.intranet, ORDER_LINES)
    assert set(history) == set(data.BAD_ORDER_LINES), "resolved records must be kept, not deleted"
    for key in (fixed_qty, fixed_price):
        assert history[key]["resolved_at"] is not None
        assert history[key]["attempts"] == 1
    assert history[still_bad]["resolved_at"] is None
    assert history[still_bad]["attempts"] == 2
    assert quarantined == set(data.BAD_ORDER_LINES) - {fixed_qty, fixed_price}

    execute(zones.intranet, "UPDATE zs_order_line_src SET qty_ordered = 0, revision = revision + 1, is_sync = :f "
            "WHERE order_ref = 'ORD-002' AND line_no = 2", {"f": False})  # fmt: skip
    _sync(ORDER_LINES, zones)

    reopened = errors_by_key(zones.intranet, ORDER_LINES)[fixed_qty]
    assert (reopened["resolved_at"], reopened["attempts"], reopened["reason"]) == (None, 2, "validation")


# -- eligible filter -----------------------------------------------------------------------------------------------
def test_only_eligible_rows_are_sent(zones: ZonePair) -> None:
    """Rows outside the mapping's `eligible` filter are not read, sent, flagged or quarantined until they qualify."""
    create(zones.intranet, source_tables(), "zs_ticket_src")
    create(zones.internet, target_tables(), "zs_ticket")
    states = ["ready", "draft", "ready", "closed", "ready", "draft"]
    tickets = pl.DataFrame(
        {"ticket_id": range(1, 7), "state": states, "title": [f"ticket {i}" for i in range(1, 7)], "is_sync": False}
    )
    seed(zones.intranet, "zs_ticket_src", tickets, ("ticket_id",))

    first = _sync(TICKETS, zones)

    ready = {(i,) for i, state in enumerate(states, start=1) if state == "ready"}
    assert (first.read, first.upserted, first.flagged, first.quarantined) == (3, 3, 3, 0)
    assert_nothing_lost(TICKETS, zones.intranet, zones.internet, zones.intranet, ready)
    assert set(target_rows(zones.internet, TICKETS)) == ready
    assert {key for key, row in source_rows(zones.intranet, TICKETS).items() if row["__flag"]} == ready
    assert errors(zones.intranet) == []

    execute(zones.intranet, "UPDATE zs_ticket_src SET state = 'ready' WHERE ticket_id = 2")
    second = _sync(TICKETS, zones)

    assert (second.read, second.upserted, second.flagged) == (1, 1, 1)
    assert set(target_rows(zones.internet, TICKETS)) == ready | {(2,)}


# -- invariant 6: exact data (the any-pairing test is in test_sync_matrix) ------------------------------------
def test_decimal_beyond_reader_scale_is_refused_not_rounded(zones: ZonePair) -> None:
    """1.000000000001 (12 decimals, numeric(30,12) source) does not fit numeric(18,2): type_loss, not 1.00."""
    create(zones.intranet, source_tables(), "zs_exact_src")
    create(zones.internet, target_tables(), "zs_exact")
    extra = {data.FINE_SCALE_ITEM: data.FINE_SCALE_AMOUNT, data.LOSSY_ITEM: data.LOSSY_AMOUNT}
    seed(zones.intranet, "zs_exact_src", data.exact_values(extra), ("item_id",))

    result = _sync(EXACT_VALUES, zones, batch_size=100)

    written = target_rows(zones.internet, EXACT_VALUES)
    assert (data.FINE_SCALE_ITEM,) not in written, f"written as {written.get((data.FINE_SCALE_ITEM,))}"
    assert reasons(zones.intranet, EXACT_VALUES) == {
        (data.FINE_SCALE_ITEM,): "type_loss",
        (data.LOSSY_ITEM,): "type_loss",
    }
    assert result.quarantined == 2


# -- invariant 1: NULL flags and non-unique source keys ---------------------------------------------------------
def test_flag_column_null_counts_as_unsynced(zones: ZonePair) -> None:
    """Rows whose flag is NULL are sent and flagged like rows whose flag is false."""
    pending = _order_lines(zones)
    null_flag = {key for key, values in _null_flags(zones).items() if values}
    assert null_flag, "the data set must contain NULL flags"

    _sync(ORDER_LINES, zones)

    synced, _ = assert_nothing_lost(ORDER_LINES, zones.intranet, zones.internet, zones.intranet, pending)
    assert null_flag - set(data.BAD_ORDER_LINES) <= synced


def _null_flags(pair: ZonePair) -> dict[tuple[object, ...], bool]:
    table = reflect(pair.intranet, "zs_order_line_src")
    with pair.intranet.connect() as conn:
        found = conn.execute(sa.select(table.c.order_ref, table.c.line_no, table.c.is_sync.is_(None)))
        return {(ref, line): bool(is_null) for ref, line, is_null in found}


def test_unique_violation_on_a_non_key_column_is_quarantined(zones: ZonePair) -> None:
    """The target has a unique index on merchant.email; merchant 33 reuses merchant 32's email. 33 must be
    refused ('constraint') without touching 32's target row; every other merchant lands."""
    intranet_tables().create_all(zones.intranet, tables=[intranet_tables().tables["merchant"]])
    target = internet_tables()
    sa.Index("ux_merchant_email", target.tables["merchant"].c.email, unique=True)
    target.create_all(zones.internet, tables=[target.tables["merchant"]])
    merchants = demo_data.merchants(40).with_columns(
        pl.when(pl.col("merchant_id") == 33)
        .then(pl.lit("merchant32@example.com"))
        .otherwise(pl.col("email"))
        .alias("email")
    )
    seed(zones.intranet, "merchant", merchants, ("merchant_id",))
    pending = unflagged_keys(zones.intranet, MERCHANTS)

    result = _sync(MERCHANTS, zones, batch_size=100)

    assert result.status == "partial", result.message
    _, quarantined = assert_nothing_lost(MERCHANTS, zones.intranet, zones.internet, zones.intranet, pending)
    assert quarantined == {(13,), (33,)}
    assert reasons(zones.intranet, MERCHANTS) == {
        (13,): "validation",
        (33,): "constraint",
    }
    assert target_rows(zones.internet, MERCHANTS)[(32,)]["name"] == merchants.row(31, named=True)["merchant_name"]


def test_duplicate_source_keys_across_a_batch_boundary_lose_nothing(zones: ZonePair) -> None:
    """A source whose key is not unique: two rows of merchant 25 fall on both sides of a batch boundary
    (batch size 25). Each row must still end synced (target equal to it) or quarantined, never skipped."""
    create(zones.intranet, loose_merchant_source())
    target_metadata = internet_tables()
    target_metadata.create_all(zones.internet, tables=[target_metadata.tables["merchant"]])
    merchants = demo_data.merchants(40).with_columns(
        pl.col("merchant_id").cast(pl.Int32).alias("row_id"), pl.col("fee").cast(pl.Decimal(20, 4))
    )
    twin = merchants.filter(pl.col("merchant_id") == 25).with_columns(
        pl.lit(1000, dtype=pl.Int32).alias("row_id"),
        pl.lit("Twin 25").alias("merchant_name"),
        pl.col("updated_at") + timedelta(seconds=1),
    )
    seed(zones.intranet, "merchant", pl.concat([merchants, twin]), ("row_id",))

    result = _sync(MERCHANTS, zones, batch_size=25)

    targets = target_rows(zones.internet, MERCHANTS)
    open_errors = errors_by_key(zones.intranet, MERCHANTS, open_only=True)
    for row in rows(zones.intranet, "merchant"):
        key = (row["merchant_id"],)
        values = {c.name: normalize(row[c.source], c.dtype) for c in MERCHANTS.columns}
        if flag_value(row["is_sync"]):
            assert targets.get(key) == values, f"row {row['row_id']} (merchant {key[0]}) flagged, target differs"
        else:
            assert key in open_errors, f"row {row['row_id']} (merchant {key[0]}) neither synced nor quarantined"
    assert result.read == merchants.height + 1


def test_text_keys_under_a_linguistic_collation_are_all_flagged(zones: ZonePair) -> None:
    """Mixed-case text keys in a column with the usual linguistic collation (where 'a' < 'B'): every row
    lands and is flagged in one run; nothing is reported as changed in flight on a quiet database."""
    source, target = collated_note_tables()
    source.create_all(zones.intranet)
    target.create_all(zones.internet)
    keys = ["a", "B", "c", "D", "e", "F"]
    seed(zones.intranet, "zs_note_src", data.notes(keys), ("note_key",))
    pending = unflagged_keys(zones.intranet, NOTES)

    result = _sync(NOTES, zones, batch_size=100)

    assert (result.read, result.upserted, result.flagged, result.changed_in_flight) == (6, 6, 6, 0)
    synced, _ = assert_nothing_lost(NOTES, zones.intranet, zones.internet, zones.intranet, pending)
    assert synced == {(key,) for key in keys}
