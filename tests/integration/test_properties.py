"""Property-based differential tests of the whole data path, every backend pairing (hypothesis).

Random rows with the values that break data paths — decimals at the edge of their precision, negative zero,
scale overflow, 4-byte Unicode, NUL bytes, empty versus NULL text, long text, timestamps with offsets and
microseconds at the edges of the range, keys that differ only in case or trailing blanks — go in through the
push (each record its own request, written together as the HTTP API does) and as an application writes them
(then the cron retry carries them). Afterwards every row is, exactly, in the target and flagged, or
quarantined with a reason and unflagged; a pushed row holds exactly what was sent; nothing is altered.

The seed is fixed (`derandomize`). ZONESYNC_PROPERTY_EXAMPLES, ZONESYNC_PROPERTY_MIN_ROWS and
ZONESYNC_PROPERTY_ROWS (examples per pairing, rows per example) make the long run (`make fuzz`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ZonePair
from tests.integration.helpers import create, errors_by_key, mapped, reflect, source_rows, sync, target_rows
from tests.integration.mappings import EXACT_VALUES, NOTES
from tests.integration.tables import source_tables, target_tables
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.bookkeeping.tables import sync_error
from zonesync.tasks.push.pusher import Pusher

EXAMPLES = int(os.environ.get("ZONESYNC_PROPERTY_EXAMPLES", "25"))
ROWS = int(os.environ.get("ZONESYNC_PROPERTY_ROWS", "12"))
MIN_ROWS = int(os.environ.get("ZONESYNC_PROPERTY_MIN_ROWS", "1"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

OFFSETS = [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-14)), timezone(timedelta(hours=5, minutes=45))]
EDGE_MOMENTS = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1000, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
    datetime(2026, 11, 26, 10, 0, 0, 999999, tzinfo=timezone(timedelta(hours=14))),
    datetime(1, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=14))),  # before year 1 once in UTC: refused
]
EDGE_DECIMALS = [
    Decimal("9999999999999999.99"),
    Decimal("-9999999999999999.99"),
    Decimal("-0.00"),
    Decimal("-0"),
    Decimal("0E-12"),
    Decimal("1E+2"),
    Decimal("0.001"),  # more decimals than the target keeps: quarantined, never rounded
    Decimal("123456789012345678.123456789012"),  # the source's whole precision
    Decimal("1E+20"),
]
EDGE_TEXTS = ["", " ", "a ", " a", "\x00", "nul\x00inside", "😀" * 50, "x" * 200, "x" * 201, "é", "e\u0301",
              "\u202eevil", "'; DROP TABLE zs_exact; --", "tab\tnew\nline\r\n", "\\N", "NULL"]  # fmt: skip

decimals = st.one_of(
    st.sampled_from(EDGE_DECIMALS),
    st.decimals(min_value=-(10**16) + 1, max_value=10**16 - 1, places=2, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-(10**6), max_value=10**6, places=4, allow_nan=False, allow_infinity=False),
)
texts = st.one_of(
    st.sampled_from(EDGE_TEXTS), st.text(st.characters(codec="utf-8"), max_size=40)
)  # fmt: skip
moments = st.one_of(
    st.sampled_from(EDGE_MOMENTS),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(OFFSETS)),
)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


exact_rows = st.lists(
    st.fixed_dictionaries(
        {
            "item_id": int64,
            "amount": nullable(decimals),
            "happened_at": nullable(moments),
            "label": nullable(texts),
            "active": nullable(st.booleans()),
            "day": nullable(st.dates()),
            "quantity": nullable(int64),
        }
    ),
    min_size=MIN_ROWS,
    max_size=ROWS,
    unique_by=lambda row: row["item_id"],
)
KEY_SPELLINGS = ["k", "K", "k ", "k  ", " k", "ké", "KÉ", "k\u0301", "😀", "😀 ", "ß", "SS"]
note_rows = st.lists(
    st.fixed_dictionaries(
        {
            "note_key": st.one_of(
                st.sampled_from(KEY_SPELLINGS), st.text(min_size=1, max_size=8).map(str.strip).filter(bool)
            ),
            "body": nullable(texts),
            "amount": nullable(decimals),
            "noted_at": nullable(moments),
        }
    ),
    min_size=MIN_ROWS,
    max_size=ROWS,
    unique_by=lambda row: row["note_key"],
)


@pytest.fixture
def exact_zones(any_zones: ZonePair, use_zones: Callable[..., None]) -> Iterator[ZonePair]:
    create(any_zones.intranet, source_tables(), "zs_exact_src", "zs_note_src")
    create(any_zones.internet, target_tables(), "zs_exact", "zs_note")
    use_zones(any_zones)
    yield any_zones


@pytest.fixture
def generated(request: pytest.FixtureRequest) -> Iterator[list[int]]:
    """Counts the rows the examples of one test generated; printed at its end (seen with -s)."""
    counts: list[int] = []
    yield counts
    print(f"\n{request.node.name}: {len(counts)} examples, {sum(counts)} generated rows")


@pytest.mark.parametrize(
    ("mapping", "rows"),
    [(EXACT_VALUES, exact_rows), (NOTES, note_rows)],
    ids=["every-value-kind", "keys-differing-in-case-or-blanks"],
)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_each_row_arrives_exactly_or_is_quarantined_never_altered(
    exact_zones: ZonePair,
    generated: list[int],
    mapping: SyncMapping,
    rows: st.SearchStrategy[list[dict[str, Any]]],
    data: st.DataObject,
) -> None:
    drawn = data.draw(rows, label="rows")
    generated.append(len(drawn))
    check_the_data_path(exact_zones, mapping, drawn, data.draw(st.floats(0, 1), label="pushed share"))


def check_the_data_path(zones: ZonePair, mapping: SyncMapping, rows: list[dict[str, Any]], share: float) -> None:
    """Push part of the rows, write the rest as an application would, run the retry; then the property."""
    empty(zones, mapping)
    split = round(len(rows) * share)
    results = Pusher(mapping).push_many([[row] for row in rows[:split]])
    accepted = {_key(mapping, row): row for row, result in zip(rows, results, strict=False) if result.status != "error"}
    for row in rows[split:]:
        write_as_an_application(zones.intranet, mapping, row)
    sync(mapping, zones.intranet, zones.internet, zones.intranet, batch_size=7)

    source, target = source_rows(zones.intranet, mapping), target_rows(zones.internet, mapping)
    quarantined = errors_by_key(zones.intranet, mapping, open_only=True)
    assert set(target) <= set(source), f"target rows without a source row: {set(target) - set(source)}"
    for key, values in source.items():
        if values["__flag"]:
            assert target.get(key) == mapped(values), f"{key} flagged, but the target holds {target.get(key)}"
        else:
            assert quarantined.get(key, {}).get("reason"), f"{key} is neither synced nor quarantined"
    for key, sent in accepted.items():
        assert mapped(source[key]) == expected(mapping, sent), f"{key}: the push stored other values than sent"


def empty(zones: ZonePair, mapping: SyncMapping) -> None:
    """A clean start for each example: both tables and the quarantine emptied."""
    for engine, table in ((zones.intranet, mapping.source_table), (zones.internet, mapping.target_table)):
        with engine.begin() as conn:
            conn.execute(sa.delete(reflect(engine, table)))
    with zones.intranet.begin() as conn:
        conn.execute(sa.delete(sync_error))


def write_as_an_application(engine: sa.Engine, mapping: SyncMapping, row: dict[str, Any]) -> None:
    """INSERT the row as an application would (unflagged); a value its database refuses leaves no row."""
    table = reflect(engine, mapping.source_table)
    try:
        values = {name: _bindable(engine, value) for name, value in row.items()}
        with engine.begin() as conn:
            conn.execute(sa.insert(table).values(**values, is_sync=False))
    except (sa.exc.SQLAlchemyError, ValueError, OverflowError):
        return


def _bindable(engine: sa.Engine, value: Any) -> Any:
    """How an application binds a value: UTC timestamps (naive on MariaDB and SQLite text), exact decimal text."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        if engine.dialect.name == "sqlite":
            return moment.isoformat(sep=" ")
        return moment.replace(tzinfo=None) if engine.dialect.name in ("mysql", "mariadb") else moment
    if isinstance(value, Decimal | date) and engine.dialect.name == "sqlite":
        return str(value)
    return value


def expected(mapping: SyncMapping, sent: dict[str, Any]) -> dict[str, Any]:
    """What a pushed row must hold: the values sent, timestamps in UTC (target names)."""
    values = {}
    for column in mapping.columns:
        value = sent.get(column.source)
        values[column.name] = value.astimezone(UTC) if isinstance(value, datetime) else value
    return values


def _key(mapping: SyncMapping, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[column.source] for column in mapping.key_columns)
