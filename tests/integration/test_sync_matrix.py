"""Every backend as source and as target: same-backend pairs and cross-engine pairs in both directions.

Invariants 1 (nothing lost, several batches, composite keys) and 6 (exact data) hold on each pairing.
"""

from __future__ import annotations

from tests.conftest import ZonePair
from tests.integration import data
from tests.integration.helpers import (
    assert_nothing_lost,
    create,
    errors_by_key,
    reasons,
    rows,
    seed,
    source_rows,
    sync,
    target_rows,
    unflagged_keys,
)
from tests.integration.mappings import EXACT_VALUES, ORDER_LINES
from tests.integration.tables import source_tables, target_tables


def test_composite_keys_in_small_batches_lose_nothing(any_zones: ZonePair) -> None:
    """Invariant 1 with batch_size 7 over ~30 rows keyed (order_no, line_no), a renamed key and a dropped column."""
    pair = any_zones
    create(pair.intranet, source_tables(), "zs_order_line_src")
    create(pair.internet, target_tables(), "zs_order_line")
    seed(pair.intranet, "zs_order_line_src", data.order_lines(), ("order_ref", "line_no"))
    pending = unflagged_keys(pair.intranet, ORDER_LINES)
    flagged_before = source_rows(pair.intranet, ORDER_LINES)

    result = sync(ORDER_LINES, pair.intranet, pair.internet, pair.intranet, batch_size=7)

    synced, quarantined = assert_nothing_lost(ORDER_LINES, pair.intranet, pair.internet, pair.intranet, pending)
    assert quarantined == set(data.BAD_ORDER_LINES)
    assert synced == pending - set(data.BAD_ORDER_LINES)
    assert reasons(pair.intranet, ORDER_LINES) == data.BAD_ORDER_LINES
    # Rows flagged before the run were not read and not sent.
    targets = target_rows(pair.internet, ORDER_LINES)
    assert set(targets) == synced
    assert {row["internal_note"] for row in rows(pair.internet, "zs_order_line")} == {None}, "dropped column sent"
    for key in data.ALREADY_SYNCED:
        assert source_rows(pair.intranet, ORDER_LINES)[key] == flagged_before[key]
    assert (result.status, result.message) == ("partial", "")
    assert result.read == len(pending)
    assert result.batches == -(-len(pending) // 7)
    assert result.upserted == result.flagged == len(synced)
    assert result.quarantined == len(data.BAD_ORDER_LINES)
    assert result.changed_in_flight == 0


def test_exact_values_arrive_exactly(any_zones: ZonePair) -> None:
    """Invariant 6: 18-digit decimals, µs UTC timestamps, 4-byte Unicode, '' vs NULL, 2**53+1 arrive unchanged;
    a decimal that does not fit numeric(18,2) is quarantined as type_loss and not written."""
    pair = any_zones
    create(pair.intranet, source_tables(), "zs_exact_src")
    create(pair.internet, target_tables(), "zs_exact")
    seed(pair.intranet, "zs_exact_src", data.exact_values({data.LOSSY_ITEM: data.LOSSY_AMOUNT}), ("item_id",))

    result = sync(EXACT_VALUES, pair.intranet, pair.internet, pair.intranet, batch_size=100)

    targets = target_rows(pair.internet, EXACT_VALUES)
    expected = {(item,): {"item_id": item, **values} for item, values in data.EXACT_ROWS.items()}
    assert set(targets) == set(expected)
    for key, values in expected.items():
        for column, value in values.items():
            got = targets[key][column]
            assert got == value and type(got) is type(value), f"item {key[0]} {column}: {got!r} != {value!r}"
    lossy = errors_by_key(pair.intranet, EXACT_VALUES)
    assert list(lossy) == [(data.LOSSY_ITEM,)]
    assert lossy[(data.LOSSY_ITEM,)]["reason"] == "type_loss"
    assert "amount" in lossy[(data.LOSSY_ITEM,)]["detail"]
    flags = {key: values["__flag"] for key, values in source_rows(pair.intranet, EXACT_VALUES).items()}
    assert flags == {**dict.fromkeys(expected, True), (data.LOSSY_ITEM,): False}
    assert (result.read, result.upserted, result.flagged, result.quarantined) == (7, 6, 6, 1)


def test_updates_reach_existing_target_rows_exactly(any_zones: ZonePair) -> None:
    """The update path: values changed in the source (NULL <-> value included) overwrite the target copies
    exactly; rows re-sent unchanged (flag reset by hand) are flagged again and leave the target as it was."""
    pair = any_zones
    create(pair.intranet, source_tables(), "zs_exact_src")
    create(pair.internet, target_tables(), "zs_exact")
    seed(pair.intranet, "zs_exact_src", data.exact_values(), ("item_id",))
    sync(EXACT_VALUES, pair.intranet, pair.internet, pair.intranet, batch_size=4)
    # Item 1 takes item 2's values (all NULL) and the other way round; items 3-6 are re-sent unchanged.
    expected = dict(data.EXACT_ROWS)
    expected[1], expected[2] = data.EXACT_ROWS[2], data.EXACT_ROWS[1]
    seed(pair.intranet, "zs_exact_src", data.exact_values(rows=expected, revision=2), ("item_id",))

    result = sync(EXACT_VALUES, pair.intranet, pair.internet, pair.intranet, batch_size=4)

    assert (result.status, result.read, result.upserted, result.flagged) == ("success", 6, 6, 6), result.message
    targets = target_rows(pair.internet, EXACT_VALUES)
    assert targets == {(item,): {"item_id": item, **row} for item, row in expected.items()}
    assert all(values["__flag"] for values in source_rows(pair.intranet, EXACT_VALUES).values())
