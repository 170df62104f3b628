"""The reconciliation offline: each dialect's statements compiled, canonical text helpers, the report."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.examples.tables import internet_tables, intranet_tables
from zonesync.tasks.dialects.sqlite_functions import DecimalSum, date_text, decimal_text, hash32, md5, timestamp_text
from zonesync.tasks.reconcile.compare import bucket_count, merge_groups
from zonesync.tasks.reconcile.findings import GroupTotals, Reconciliation, RowComparison
from zonesync.tasks.reconcile.queries import (
    ZoneView,
    bucket_query,
    business_window,
    detail_query,
    totals_query,
    zone_view,
)
from zonesync.tasks.reconcile.report import reconciliation_markdown, reconciliation_rows

URLS = {
    "postgresql": "postgresql+psycopg://sync@db/pay",
    "mariadb": "mysql+pymysql://sync@db/pay",
    "sqlite": "sqlite:///never-opened.db",
}
DAY = date(2026, 11, 25)
# What each database computes the canonical text and the hashes with.
SIGNATURES = {
    "postgresql": ["md5(", "to_char(timezone(", "AS NUMERIC(1000, 2)", "AS BIT(32)) AS BIGINT)", " || "],
    "mariadb": ["md5(concat(", "date_format(payment.created_at", "AS DECIMAL(65, 2)", "conv(left(", "utf8mb4_bin"],
    "sqlite": ["zonesync_md5(", "zonesync_timestamp(", "zonesync_decimal(payment.amount", "zonesync_hash32("],
}


def view(name: str, role: str = "source", day: date | None = DAY) -> ZoneView:
    tables = internet_tables() if role == "source" else intranet_tables()
    return zone_view(PAYMENTS, role, tables.tables["payment"], sa.create_engine(URLS[name]), day, "Asia/Jakarta")  # type: ignore[arg-type]


def sql(zone: ZoneView, statement: sa.ClauseElement) -> str:
    return " ".join(str(statement.compile(dialect=zone.engine.dialect)).split())


@pytest.mark.parametrize("name", list(URLS))
def test_statements_compile_with_bound_values_only(name: str) -> None:
    """Each dialect's pieces appear; the eligible value and the date bounds are bound, never inlined."""
    source = view(name)
    hashed = sql(source, bucket_query(source, 500))
    for piece in SIGNATURES[name]:
        assert piece in hashed
    for statement in (totals_query(source), bucket_query(source, 8), detail_query(source, 8, [1, 2], limit=5)):
        text = sql(source, statement)
        assert "'S'" not in text and "2026" not in text and "\x1f" not in text
        assert "payment.created_at >=" in text and "payment.created_at <" in text
    assert "GROUP BY parts.bucket" in hashed
    assert "payment.status =" in hashed  # only eligible source rows are compared
    assert "payment.status =" not in sql(view(name, "target"), bucket_query(view(name, "target"), 8))


@pytest.mark.parametrize("name", list(URLS))
def test_totals_group_by_canonical_values_and_eligibility(name: str) -> None:
    """Source totals split eligible from ineligible rows; target totals do not; no date: no window."""
    source_sql = sql(view(name), totals_query(view(name)))
    assert "eligible" in source_sql and source_sql.endswith("GROUP BY dated.g0, dated.g1, dated.eligible")
    target_sql = sql(view(name, "target", None), totals_query(view(name, "target", None)))
    assert target_sql.endswith("GROUP BY dated.g0, dated.g1") and "created_at >=" not in target_sql


def test_merchants_without_business_date_compare_the_whole_table() -> None:
    """No business_date_column, no groups, no amounts: one count over the table."""
    table = intranet_tables().tables["merchant"]
    merchants = zone_view(MERCHANTS, "source", table, sa.create_engine(URLS["sqlite"]), DAY, "UTC")
    assert merchants.window == ()
    text = sql(merchants, totals_query(merchants))
    assert text.startswith("SELECT count(*) AS rows FROM (SELECT") and "GROUP BY" not in text
    assert "merchant.merchant_name" in sql(merchants, bucket_query(merchants, 1))  # the renamed source column


def test_business_window_follows_the_time_zone() -> None:
    """Jakarta is UTC+7; a DST day in Berlin is 23 hours long."""
    assert business_window(DAY, "Asia/Jakarta") == (
        datetime(2026, 11, 24, 17, tzinfo=UTC),
        datetime(2026, 11, 25, 17, tzinfo=UTC),
    )
    assert business_window(DAY, "UTC") == (datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC))
    start, end = business_window(date(2026, 3, 29), "Europe/Berlin")
    assert (end - start).total_seconds() == 23 * 3600


def test_bucket_count_is_bounded() -> None:
    assert [bucket_count(n) for n in (0, 1, 1_000, 1_001, 1_000_000, 10**9)] == [1, 1, 1, 2, 1_000, 4_096]


def test_sqlite_canonical_text_matches_the_servers() -> None:
    """Decimals at their scale rounded half away from zero, no '-0.00'; timestamps as UTC wall clock."""
    assert [decimal_text(v, 2) for v in ("12.5", 12, "-0.001", "1.005", "-1.005", None)] == [
        "12.50", "12.00", "0.00", "1.01", "-1.01", None,
    ]  # fmt: skip
    assert decimal_text("123456789012345678901234567890.125", 2) == "123456789012345678901234567890.13"
    assert decimal_text(0.1, 6) == "0.100000"
    assert decimal_text("n/a", 2) == "n/a"
    assert timestamp_text("2026-11-25 09:00:00.123456+00:00") == "2026-11-25 09:00:00.123456"
    assert timestamp_text("2026-11-25T16:00:00+07:00") == "2026-11-25 09:00:00.000000"
    assert timestamp_text("2026-11-25 09:00:00") == "2026-11-25 09:00:00.000000"
    assert (timestamp_text("garbage"), timestamp_text(None)) == ("garbage", None)
    assert (date_text("2026-02-28"), date_text(None)) == ("2026-02-28", None)
    assert md5("é") == hashlib.md5("é".encode()).hexdigest() and md5(None) is None
    assert hash32("ffffffff00") == 2**32 - 1 and hash32(None) is None


def test_sqlite_decimal_sum_is_exact() -> None:
    total = DecimalSum()
    for value in ("0.10", "0.20", None, "123456789012345.67", 1):
        total.step(value)
    assert total.finalize() == "123456789012346.97"
    assert DecimalSum().finalize() is None


def test_merge_groups_keeps_ineligible_source_rows_apart() -> None:
    """'F' rows are counted in the source and not expected in the target; a group only in the target appears."""
    source = [("S", "IDR", True, 2, Decimal("10.50")), ("F", "IDR", False, 1, "3.1")]
    target = [("S", "IDR", 2, Decimal("10.50")), ("X", "USD", 1, Decimal("1"))]
    groups = {(g.values, g.expected): g for g in merge_groups(PAYMENTS, source, target)}
    assert groups[("S", "IDR"), True].matches
    failed = groups[("F", "IDR"), False]
    assert (failed.source_rows, failed.source_amounts, failed.target_rows, failed.matches) == (
        1, (Decimal("3.10"),), 0, True,
    )  # fmt: skip
    stray = groups[("X", "USD"), True]
    assert (stray.source_rows, stray.source_amounts, stray.matches) == (0, (Decimal("0.00"),), False)


def report(*, different: int = 0) -> Reconciliation:
    group = GroupTotals(("S|x", "IDR"), True, 2, (Decimal("12.50"),), 2, (Decimal("12.50"),))
    failed = GroupTotals(("F", None), False, 1, (Decimal("1.00"),), 0, (Decimal("0.00"),))
    keys = tuple((f"a|{i}",) for i in range(min(different, 2)))
    comparison = RowComparison(4, 4, 0, 0, different, (), (), keys, 1, not different)
    return Reconciliation(
        "payments",
        DAY,
        "Asia/Jakarta",
        ("ref",),
        ("status", "currency"),
        ("amount",),
        (group, failed),
        comparison,
        2,
        0.1,
    )


def test_report_renders_markdown_and_json_rows() -> None:
    """Pipes escaped, decimals as strings, capped key lists say so, rows serialise to JSON."""
    assert report().ok and not report(different=3).ok
    text = reconciliation_markdown(report(different=3))
    assert "## Reconciliation of payments: 2026-11-25 (Asia/Jakarta)" in text
    assert "| status | currency | eligible | rows | amount | match |" in text
    assert "| S\\|x | IDR | yes | 2 / 2 | 12.50 / 12.50 | yes |" in text
    assert "| F | NULL | no | 1 / 0 | 1.00 / 0.00 | yes |" in text
    assert "Keys different: 3 (first 2): ref=a\\|0, ref=a\\|1" in text
    rows = reconciliation_rows(report(different=3))
    assert json.loads(json.dumps(rows)) == rows
    assert rows[0]["source_amount"] == "12.50" and rows[0]["group"] == "status=S|x, currency=IDR"
    assert [row["kind"] for row in rows] == ["totals", "totals", "different", "different"]
    assert rows[-1]["key"] == "ref=a|1"
    assert report().headline().startswith("totals match; 4 source rows vs 4 target rows compared: 0 missing")
