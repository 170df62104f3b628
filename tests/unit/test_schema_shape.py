"""How a change of a mapped table is judged (compatible or breaking), offline, one change at a time."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zonesync.tasks.schema.shape import ColumnFacts, MappingShape, TableFacts, compare

FEE = ColumnFacts("numeric(18, 2)", "decimal", nullable=False, has_default=False, precision=18, scale=2)
AT = ColumnFacts("timestamp with time zone", "timestamptz", nullable=False, has_default=False, fraction_digits=6)
NAME = ColumnFacts("varchar(100)", "text", nullable=False, has_default=False, length=100, collation="C")
EMAIL = ColumnFacts("varchar(200)", "text", nullable=True, has_default=False, length=200)
ID = ColumnFacts("bigint", "integer", nullable=False, has_default=False, integer_range=(-(2**63), 2**63 - 1))
NOTE = ColumnFacts("text", "text", nullable=True, has_default=False)


def shape(**target_columns: ColumnFacts | None) -> MappingShape:
    """The demo merchants' shape, with some target columns replaced (None: dropped; a new name: added)."""
    columns = {"merchant_id": ID, "fee": FEE, "updated_at": AT, "name": NAME, "email": EMAIL, "internal": NOTE}
    for name, facts in target_columns.items():
        if facts is None:
            columns.pop(name)
        else:
            columns[name] = facts
    used = ("merchant_id", "fee", "updated_at", "name", "email")
    source = TableFacts("intranet", "merchant", {"merchant_id": ID, "fee": FEE}, ("merchant_id", "fee"),
                        ("merchant_id",), inserted=True)  # fmt: skip
    return MappingShape(source, TableFacts("internet", "merchant", columns, used, ("merchant_id",), inserted=True))


@pytest.mark.parametrize(
    ("column", "now", "why"),
    [
        ("fee", replace(FEE, type="numeric(18, 1)", scale=1, precision=18), "fewer digits after the point"),
        ("fee", replace(FEE, type="numeric(12, 2)", precision=12), "fewer digits before the point"),
        ("fee", replace(FEE, type="double precision", family="float", precision=None, scale=None), "from decimal to"),
        ("updated_at", replace(AT, type="timestamp(0) with time zone", fraction_digits=0), "fewer digits of a second"),
        ("updated_at", replace(AT, type="timestamp", family="timestamp"), "from timestamptz to timestamp"),
        ("name", replace(NAME, type="varchar(50)", length=50), "shorter texts"),
        ("name", replace(NAME, type="char(100)", padded=True), "padded with blanks"),
        ("name", replace(NAME, trims_trailing_blanks=True), "without trailing blanks"),
        ("name", replace(NAME, astral=False), "outside the BMP"),
        ("merchant_id", replace(ID, type="integer", integer_range=(-(2**31), 2**31 - 1)), "smaller integer range"),
        ("email", replace(EMAIL, nullable=False), "no longer takes NULL"),
        ("email", None, "dropped or renamed"),
    ],
)
def test_a_change_that_narrows_a_mapped_column_breaks_the_mapping(
    column: str, now: ColumnFacts | None, why: str
) -> None:
    (change,) = compare(shape(), shape(**{column: now})).changes
    assert (change.verdict, change.column, change.zone) == ("breaking", column, "internet")
    assert why in change.why


@pytest.mark.parametrize(
    ("column", "now"),
    [
        ("fee", replace(FEE, type="numeric(20, 4)", precision=20, scale=4)),
        ("fee", replace(FEE, type="numeric", precision=None, scale=None)),
        ("name", replace(NAME, type="varchar(200)", length=200)),
        ("name", replace(NAME, type="text", length=None)),
        ("merchant_id", replace(ID, type="numeric(38, 0)")),  # same family, same range
        ("email", replace(EMAIL, nullable=True, collation="C")),  # not a key: its collation may change
        ("internal", replace(NOTE, type="varchar(5)", length=5)),  # a column the mapping does not use
        ("internal", None),
        ("added", NOTE),
        ("added_with_default", replace(NOTE, nullable=False, has_default=True)),
    ],
)
def test_a_widening_or_an_unused_column_is_compatible(column: str, now: ColumnFacts | None) -> None:
    (change,) = compare(shape(), shape(**{column: now})).changes
    assert change.verdict == "compatible", change.line()


def test_a_new_required_column_breaks_a_table_zonesync_inserts_into() -> None:
    (change,) = compare(shape(), shape(added=replace(NOTE, nullable=False))).changes
    assert change.verdict == "breaking" and "NOT NULL column without a default" in change.why


def test_a_key_change_or_a_key_collation_change_breaks_the_mapping() -> None:
    moved = shape()
    moved = MappingShape(moved.source, replace(moved.target, primary_key=("email",)))
    (change,) = compare(shape(), moved).changes
    assert change.verdict == "breaking" and change.column is None and "primary key (email)" in change.line()
    keyed = shape(merchant_id=replace(ID, collation="und-x-icu"))
    assert compare(shape(), keyed).breaking[0].why.startswith("the collation of a key column changed")


def test_a_shape_survives_its_json_and_has_a_stable_fingerprint() -> None:
    original = shape()
    again = MappingShape.from_json(original.to_json())
    assert again == original and again.fingerprint == original.fingerprint
    assert shape(name=replace(NAME, length=50)).fingerprint != original.fingerprint


def test_a_change_is_one_line_naming_zone_table_column_old_and_new() -> None:
    (change,) = compare(shape(), shape(fee=replace(FEE, type="numeric(18, 1)", scale=1))).changes
    assert change.line() == (
        "internet zone, table 'merchant', column 'fee': numeric(18, 2) not null -> numeric(18, 1) not null "
        "(fewer digits after the point)"
    )
