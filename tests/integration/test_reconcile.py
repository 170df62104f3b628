"""The end-day reconciliation on every backend and every pairing, on real databases.

The payments mapping goes internet -> intranet; its business date is placed by `created_at` in Asia/Jakarta
(UTC+7), so business date D is the UTC instants [D-1 17:00, D 17:00).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import ZonePair
from tests.integration.helpers import create, execute, reflect, seed
from tests.integration.mappings import EXACT_VALUES
from tests.integration.tables import target_tables
from zonesync.schemas.errors import ConfigError
from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.reconcile import compare as reconcile
from zonesync.tasks.reconcile.compare import reconcile_mapping
from zonesync.tasks.reconcile.findings import Reconciliation
from zonesync.tasks.reconcile.queries import ZoneView, digest, zone_view
from zonesync.tasks.reconcile.report import reconciliation_markdown
from zonesync.tasks.setup.demo_data import merchants

DAY = date(2026, 11, 25)
TZ = "Asia/Jakarta"
START = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # DAY 00:00 in Jakarta
BIG = "123456789012345.67"
PAYMENT_SCHEMA: dict[str, Any] = {
    "payment_id": pl.Int64, "reference": pl.String, "merchant_id": pl.Int64, "account": pl.String,
    "amount": pl.Decimal(18, 2), "currency": pl.String, "status": pl.String, "channel": pl.String,
    "customer_name": pl.String, "created_at": pl.Datetime("us", "UTC"), "updated_at": pl.Datetime("us", "UTC"),
}  # fmt: skip


def payment(pid: int, status: str = "S", currency: str = "IDR", amount: str = "10.00", **changes: Any) -> dict:
    """One payment of the business date (one hour into it), unless `created_at` says otherwise."""
    at = changes.pop("created_at", START + timedelta(hours=1, minutes=pid))
    values = {
        "payment_id": pid, "reference": f"PAY-{pid:06d}", "merchant_id": 7, "account": f"ID{pid:020d}",
        "amount": Decimal(amount), "currency": currency, "status": status, "channel": "web",
        "customer_name": "Budi Santoso", "created_at": at, "updated_at": at + timedelta(seconds=5),
    }  # fmt: skip
    return values | changes


def day_payments() -> list[dict]:
    """Payments around the business date: successful, failed and pending, at its edges and beyond."""
    return [
        payment(1, amount=BIG),
        payment(2, amount="0.01"),
        payment(3, currency="USD", amount="12.50", customer_name="Café Ünïcode 😀 北京"),
        payment(4, status="F", amount="99.99"),
        payment(5, created_at=START + timedelta(minutes=30)),  # 17:30 UTC on D-1: business date D in Jakarta
        payment(6, currency="USD", amount="20.00", customer_name=None),
        payment(7, amount="5.00", created_at=START - timedelta(microseconds=1)),  # last µs of D-1
        payment(8, amount="7.00", created_at=START + timedelta(days=1)),  # first µs of D+1
        payment(9, amount="3.33", created_at=START + timedelta(days=1, microseconds=-1)),  # last µs of D
        payment(10, status="F", currency="USD", amount="1.00"),
        payment(11, status="P", amount="2.00"),
        payment(12, amount="0.10", created_at=START - timedelta(days=3)),
    ]


def seed_payments(pair: ZonePair, source: Iterable[dict], target: Iterable[dict]) -> None:
    """Payments in the internet zone (source) and the intranet zone (target)."""
    create(pair.internet, internet_tables(), "payment")
    create(pair.intranet, intranet_tables(), "payment")
    extra = {"client_ip": pl.lit("203.0.113.9"), "is_sync": pl.lit(True)}
    for engine, records, columns in ((pair.internet, source, extra), (pair.intranet, target, {})):
        frame = pl.DataFrame(list(records), schema=PAYMENT_SCHEMA).with_columns(**columns)
        if frame.height:
            seed(engine, "payment", frame, ("payment_id",))


def run(pair: ZonePair, day: date | None = DAY, *, limit: int = 50) -> Reconciliation:
    """Reconcile the payments mapping (internet -> intranet) for a business date in Jakarta."""
    return reconcile_mapping(PAYMENTS, day, pair.internet, pair.intranet, timezone=TZ, list_limit=limit)


def totals(found: Reconciliation) -> dict[tuple[Any, ...], tuple[int, Decimal, int, Decimal]]:
    """(status, currency, expected) -> (source rows, source amount, target rows, target amount)."""
    return {
        (*g.values, g.expected): (g.source_rows, g.source_amounts[0], g.target_rows, g.target_amounts[0])
        for g in found.groups
    }


def eligible(records: Iterable[dict]) -> list[dict]:
    return [record for record in records if record["status"] == "S"]


def test_identical_zones_agree_through_the_fast_path(any_zones: ZonePair) -> None:
    """Equal totals per (status, currency) exact to the cent; no key listed; no row fetched."""
    seed_payments(any_zones, day_payments(), eligible(day_payments()))

    found = run(any_zones)

    assert found.ok, reconciliation_markdown(found)
    assert found.comparison.fast_path
    assert (found.comparison.source_rows, found.comparison.target_rows) == (6, 6)  # 1, 2, 3, 5, 6, 9
    s_idr = Decimal(BIG) + Decimal("0.01") + Decimal("10.00") + Decimal("3.33")
    assert totals(found) == {
        ("F", "IDR", False): (1, Decimal("99.99"), 0, Decimal("0.00")),
        ("F", "USD", False): (1, Decimal("1.00"), 0, Decimal("0.00")),
        ("P", "IDR", False): (1, Decimal("2.00"), 0, Decimal("0.00")),
        ("S", "IDR", True): (4, s_idr, 4, s_idr),
        ("S", "USD", True): (2, Decimal("32.50"), 2, Decimal("32.50")),
    }
    assert str(s_idr) == "123456789012359.01"
    assert all(not found.comparison.keys(kind) for kind in ("missing_in_target", "only_in_target", "different"))
    assert all(group.matches for group in found.groups)


def test_each_difference_is_reported_in_its_category(any_zones: ZonePair) -> None:
    """Missing, extra, amount, Unicode name, 1 µs, NULL vs '': each under its key; other dates ignored."""
    source = day_payments()
    target = {p["payment_id"]: dict(p) for p in eligible(source)}
    del target[2]  # never arrived
    target[100] = payment(100, amount="40.00")  # only in the intranet
    target[1]["amount"] = Decimal("123456789012345.66")
    target[3]["customer_name"] = "Cafe Ünïcode 😀 北京"
    target[5]["updated_at"] += timedelta(microseconds=1)
    target[6]["customer_name"] = ""  # NULL in the source
    target[7]["amount"] = Decimal("5.01")  # another business date: not this reconciliation's business
    target[8]["customer_name"] = "someone else"
    seed_payments(any_zones, source, target.values())

    found = run(any_zones)

    c = found.comparison
    assert not found.ok and not c.fast_path
    assert (c.missing_in_target, c.only_in_target, c.different) == (1, 1, 4)
    assert (c.missing_in_target_keys, c.only_in_target_keys) == (((2,),), ((100,),))
    assert c.different_keys == ((1,), (3,), (5,), (6,))
    by_group = totals(found)
    assert by_group["S", "IDR", True] == (
        4, Decimal(BIG) + Decimal("13.34"), 4, Decimal("123456789012345.66") + Decimal("53.33")
    )  # fmt: skip
    assert [g.values for g in found.groups if not g.matches] == [("S", "IDR"), ("S", "USD")]
    assert {g.values: g.differing_rows for g in found.groups} == {("S", "IDR"): 2, ("S", "USD"): 2, ("F", "IDR"): 0,
                                                                  ("F", "USD"): 0, ("P", "IDR"): 0}  # fmt: skip
    assert "payment_id=100" in reconciliation_markdown(found)


def test_more_differences_than_the_list_limit(zones: ZonePair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact counts, capped lists; the same with many small buckets and chunks (one-sided buckets too)."""
    source = [payment(pid, amount=f"{pid}.25") for pid in range(1, 61)]
    target = [dict(p) for p in source if p["payment_id"] > 10]  # 1..10 missing
    for record in target[:10]:  # 11..20 different
        record["amount"] += Decimal("0.01")
    target += [payment(pid) for pid in range(101, 111)]  # 101..110 only in the target
    seed_payments(zones, source, target)

    first = run(zones, limit=3)
    monkeypatch.setattr(reconcile, "ROWS_PER_BUCKET", 2)
    monkeypatch.setattr(reconcile, "CHUNK_ROWS", 5)
    bucketed = run(zones, limit=3)

    for found in (first, bucketed):
        c = found.comparison
        assert (c.source_rows, c.target_rows) == (60, 60)
        assert (c.missing_in_target, c.only_in_target, c.different) == (10, 10, 10)
        assert len(c.missing_in_target_keys) == len(c.only_in_target_keys) == len(c.different_keys) == 3
        assert {k[0] for k in c.missing_in_target_keys} <= set(range(1, 11))
        assert {k[0] for k in c.only_in_target_keys} <= set(range(101, 111))
        assert {k[0] for k in c.different_keys} <= set(range(11, 21))
        assert "(first 3)" in reconciliation_markdown(found)
    assert (first.comparison.buckets, bucketed.comparison.buckets) == (1, 30)


def test_many_buckets_fast_path_and_an_empty_target(zones: ZonePair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Identical zones in 25 buckets: no detail query; an empty target: every eligible row missing."""
    monkeypatch.setattr(reconcile, "ROWS_PER_BUCKET", 2)
    source = [payment(pid, status="S" if pid % 5 else "F") for pid in range(1, 61)]
    seed_payments(zones, source, eligible(source))
    found = run(zones)
    assert found.ok and found.comparison.fast_path and found.comparison.buckets == 24

    execute(zones.intranet, "DELETE FROM payment")
    empty = run(zones, limit=5)
    assert (empty.comparison.missing_in_target, len(empty.comparison.missing_in_target_keys)) == (48, 5)
    assert (empty.comparison.only_in_target, empty.comparison.different) == (0, 0)


def test_whole_table_for_an_intranet_to_internet_mapping(any_zones: ZonePair) -> None:
    """Merchants go out (no business date column, no groups): the whole table, renamed columns compared."""
    pair = any_zones
    create(pair.intranet, intranet_tables(), "merchant")
    create(pair.internet, internet_tables(), "merchant")
    source = merchants(30)
    seed(pair.intranet, "merchant", source, ("merchant_id",))
    target = source.rename({"merchant_name": "name"}).drop("tax_id", "is_sync").filter(pl.col("merchant_id") != 30)
    target = target.with_columns(pl.when(pl.col("merchant_id") == 13).then(pl.lit("x")).otherwise("name").alias("name"))
    seed(pair.internet, "merchant", target, ("merchant_id",))

    found = reconcile_mapping(MERCHANTS, DAY, pair.intranet, pair.internet, timezone=TZ)

    assert found.business_date is None
    assert [(g.values, g.source_rows, g.target_rows) for g in found.groups] == [((), 30, 29)]
    c = found.comparison
    assert (c.missing_in_target_keys, c.only_in_target_keys, c.different_keys) == (((30,),), (), ((13,),))


def test_totals_never_say_match_for_a_group_whose_rows_the_key_list_says_differ(any_zones: ZonePair) -> None:
    """Counts and amount sums equal, names different: the group does not match, and the markdown says why."""
    source = day_payments()
    target = {p["payment_id"]: dict(p) for p in eligible(source)}
    target[2]["customer_name"] = "someone else"  # both S, IDR
    target[5]["customer_name"] = "another one"
    seed_payments(any_zones, source, target.values())

    found = run(any_zones)

    assert found.comparison.different_keys == ((2,), (5,)) and not found.ok
    (wrong,) = [g for g in found.groups if not g.matches]
    assert wrong.values == ("S", "IDR") and wrong.differing_rows == 2
    assert wrong.source_rows == wrong.target_rows and wrong.source_amounts == wrong.target_amounts
    assert "**NO** (2 rows differ)" in reconciliation_markdown(found)


def test_a_row_whose_group_value_differs_unsettles_both_groups(zones: ZonePair) -> None:
    source = day_payments()
    target = {p["payment_id"]: dict(p) for p in eligible(source)}
    target[2]["currency"] = "USD"  # IDR in the source
    seed_payments(zones, source, target.values())

    found = run(zones)

    assert found.comparison.different_keys == ((2,),)
    assert {g.values: g.differing_rows for g in found.groups if g.differing_rows} == {("S", "IDR"): 1, ("S", "USD"): 1}


def test_canonical_text_and_hashes_are_the_same_everywhere(zones: ZonePair) -> None:
    """Each value kind renders as one text on every backend, and its MD5 equals Python's over that text."""
    create(zones.internet, target_tables(), "zs_exact")
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    frame = pl.DataFrame(
        [
            {"item_id": 1, "amount": Decimal("-12.5"), "happened_at": moment, "label": "a|b 😀",
             "active": True, "day": date(2026, 2, 28), "quantity": -(2**53) - 1},
            {"item_id": 2, "amount": None, "happened_at": None, "label": "", "active": False, "day": None,
             "quantity": None},
        ],
        schema={"item_id": pl.Int64, "amount": pl.Decimal(18, 2), "happened_at": pl.Datetime("us", "UTC"),
                "label": pl.String, "active": pl.Boolean, "day": pl.Date, "quantity": pl.Int64},
    )  # fmt: skip
    seed(zones.internet, "zs_exact", frame, ("item_id",))
    view = _view(zones.internet, "zs_exact")
    names = EXACT_VALUES.target_columns
    texts: list[sa.ColumnElement[Any]] = [
        view.reconciling.canonical_text(view.column(n), c.dtype).label(n)
        for n, c in zip(names, EXACT_VALUES.columns, strict=True)
    ]
    query = sa.select(*texts, digest(view, names).label("rh")).order_by(view.column("item_id"))
    rows = [tuple(row) for row in view.fetch(query, "test")]

    expected = [
        ("1", "-12.50", "2026-01-02 03:04:05.000006", "a|b 😀", "1", "2026-02-28", str(-(2**53) - 1)),
        ("2", None, None, "", "0", None, None),
    ]
    assert [row[:-1] for row in rows] == expected
    for row, values in zip(rows, expected, strict=True):
        text = "\x1f".join("0" if value is None else "1" + value for value in values)
        assert row[-1] == hashlib.md5(text.encode()).hexdigest()


def _view(engine: Engine, table: str) -> ZoneView:
    return zone_view(EXACT_VALUES, "target", reflect(engine, table), engine, None, "UTC")


def test_a_missing_table_is_one_clear_error(zones: ZonePair) -> None:
    """No payment table in the intranet zone: a ConfigError naming the table and the zone."""
    create(zones.internet, internet_tables(), "payment")
    with pytest.raises(ConfigError, match="table 'payment' not found in the intranet zone"):
        run(zones)
