"""The compiled checks (`tasks.validate.accepts`) against Pandera's own validation: same rows, same reasons.

`split_valid` asks Pandera only when the compiled checks do not accept a batch, so the two must agree: over a
table of cases and a few hundred generated batches per model, mixing good, boundary and bad values.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
import pytest
from pandera.api.polars.types import PolarsData

from zonesync.schemas.examples import MERCHANTS, PAYMENTS
from zonesync.schemas.mapping import SyncMapping
from zonesync.tasks.sync import validate
from zonesync.tasks.sync.transform import ROW
from zonesync.tasks.sync.validate import Validated, accepts, compile_model, split_valid


class Wide(pa.DataFrameModel):
    """Most built-in checks, nullable and not, floats with NaN, a unique column, ignore_na off, a custom check."""

    item_id: int
    ref: str = pa.Field(unique=True, str_length={"exact_value": 3})
    score: float = pa.Field(in_range={"min_value": 0, "max_value": 10})
    ratio: float = pa.Field(nullable=True, lt=1.0, gt=-1.0)
    weight: float  # not nullable: NaN counts as missing
    code: str = pa.Field(nullable=True, str_matches=r"^[A-Z]{2}\d$")
    tag: str = pa.Field(nullable=True, notin=["bad"], str_startswith="t", ignore_na=False)
    note: str = pa.Field(nullable=True, str_contains="o", str_endswith="k", ne="took")
    amount: Annotated[pl.Decimal, 18, 2] = pa.Field(gt=0, le=1000)
    count: int = pa.Field(nullable=True, ge=-3, eq=2)
    active: bool = pa.Field(nullable=True)
    day: pl.Date = pa.Field(nullable=True)
    at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(nullable=True)

    @pa.check("item_id")
    def small_id(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key) < 6)


class StrictWide(Wide):
    class Config:
        strict = True


class ElementWise(pa.DataFrameModel):
    """An element-wise check: not compiled, Pandera always decides."""

    item_id: int
    label: str = pa.Field(nullable=True)

    @pa.check("label", element_wise=True)
    def short(cls, value: str) -> bool:
        return len(value) < 3


class FrameCheck(pa.DataFrameModel):
    """A frame-level check: not compiled."""

    item_id: int
    label: str = pa.Field(nullable=True)

    @pa.dataframe_check
    def few_rows(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("item_id") < 100)


class ValuesEq(pa.DataFrameModel):
    """A check that computes a Python bool from collected data: not compiled."""

    item_id: int
    label: str = pa.Field(unique_values_eq=["a", "b"])


def mapping_for(model: type[pa.DataFrameModel], keys: tuple[str, ...]) -> SyncMapping:
    """A mapping whose target model is `model` (tables are never opened in these tests)."""
    return SyncMapping(name="wide", direction="intranet_to_internet", source_table="t", target_table="t",
                       keys=keys, model=model)  # fmt: skip


WIDE = mapping_for(Wide, ("item_id",))
MAPPINGS = [MERCHANTS, PAYMENTS, WIDE, mapping_for(StrictWide, ("item_id",)), mapping_for(ElementWise, ("item_id",)),
            mapping_for(FrameCheck, ("item_id",)), mapping_for(ValuesEq, ("item_id",))]  # fmt: skip

MOMENT = datetime(2026, 11, 26, 3, 0, 0, 123456, tzinfo=UTC)
TEXT = [None, "", "A", "I", "S", "F", "ab", "abc", "AB1", "Ab1", "tok", "took", "bad", "book", "ok", "tk", "IDR",
        "ready", "😀😀😀", "x" * 20, "x" * 21, "x" * 34, "x" * 35, "x" * 100, "x" * 101, "x" * 200]  # fmt: skip
POOLS: dict[type[pl.DataType], list[Any]] = {
    pl.Int64: [None, -4, -3, 0, 1, 2, 3, 5, 6, 2**40],
    pl.String: TEXT,
    pl.Float64: [None, math.nan, math.inf, -math.inf, -1.0, -0.5, 0.0, 0.99, 1.0, 10.0, 10.5],
    pl.Decimal: [None, Decimal("-0.01"), Decimal("0.00"), Decimal("0.01"), Decimal("1000.00"), Decimal("1000.01")],
    pl.Boolean: [None, True, False],
    pl.Date: [None, date(2026, 1, 1)],
    pl.Datetime: [None, MOMENT],
}


def schema_of(mapping: SyncMapping) -> dict[str, pl.DataType]:
    return {column.name: column.dtype for column in mapping.columns}


def generated(mapping: SyncMapping, rng: random.Random, height: int, bad: float) -> pl.DataFrame:
    """A batch of `height` rows: each value a good one (from a known-good row) or, with chance `bad`, any value."""
    schema = schema_of(mapping)
    good = good_row(mapping)
    rows = []
    for _ in range(height):
        row = {}
        for name, dtype in schema.items():
            pool = POOLS[dtype.base_type()]
            row[name] = rng.choice(pool) if rng.random() < bad else good[name]
        for key in mapping.keys:  # mostly distinct keys, sometimes a repeat
            row[key] = rng.randrange(height + 2) if schema[key] == pl.Int64 else rng.choice(TEXT[1:])
        rows.append(row)
    return pl.DataFrame(rows, schema=schema, orient="row").with_row_index(ROW)


def good_row(mapping: SyncMapping) -> dict[str, Any]:
    """One row every check of the test models accepts."""
    return {
        "merchant_id": 1, "name": "Toko", "status": "A", "fee": Decimal("1.50"), "email": None, "updated_at": MOMENT,
        "payment_id": 1, "reference": "R-1", "account": "ACC", "amount": Decimal("12.00"), "currency": "IDR",
        "channel": "qris", "customer_name": "Ünïcode 😀", "created_at": MOMENT, "item_id": 1, "ref": "abc",
        "score": 5.0, "ratio": 0.5, "weight": -2.5, "code": "AB1", "tag": "tok", "note": "book", "count": 2,
        "active": True, "day": date(2026, 1, 1), "at": MOMENT, "label": "a",
    }  # fmt: skip


def outcome(mapping: SyncMapping, frame: pl.DataFrame, compiled: bool) -> Validated | str:
    """split_valid's result, or the error it raised (Pandera itself fails on some models: then both must)."""
    try:
        return split_valid(frame, mapping, compiled=compiled)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def assert_same(mapping: SyncMapping, frame: pl.DataFrame) -> None:
    fast, reference = outcome(mapping, frame, True), outcome(mapping, frame, False)
    if isinstance(reference, str) or isinstance(fast, str):
        assert fast == reference
        return
    assert fast.valid.equals(reference.valid)
    assert fast.rejected.equals(reference.rejected), (fast.rejected, reference.rejected)


def pandera_accepts(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> bool:
    try:
        model.validate(frame, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError):
        return False
    return True


def test_the_demo_and_plain_models_are_compiled_and_the_others_left_to_pandera() -> None:
    assert all(compile_model(m) is not None for m in (MERCHANTS.model, PAYMENTS.model, Wide, StrictWide))
    assert all(compile_model(m) is None for m in (ElementWise, FrameCheck, ValuesEq))


def test_without_pandera_s_check_internals_every_batch_goes_to_pandera(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Pandera release that moved `Check._check_fn` / `_check_kwargs`: nothing compiles, results stay right."""
    monkeypatch.setattr(validate, "COMPILABLE", False)
    compile_model.cache_clear()
    try:
        assert compile_model(MERCHANTS.model) is None
        for name, changes in (("good", {}), ("bad", {"count": 3})):
            frame = wide(**changes)
            checked = split_valid(frame, WIDE)
            assert checked.rejected.height == (name == "bad"), checked.rejected
    finally:
        monkeypatch.undo()
        compile_model.cache_clear()


def test_the_installed_pandera_keeps_the_check_internals_the_compiler_reads() -> None:
    assert validate.COMPILABLE, "pandera moved Check._check_fn/_check_kwargs: compiled validation is off"


@pytest.mark.parametrize("mapping", MAPPINGS, ids=lambda m: m.model.__name__)
@pytest.mark.parametrize("seed", range(4))
def test_generated_batches_get_the_same_result_as_from_pandera(mapping: SyncMapping, seed: int) -> None:
    rng = random.Random(f"{mapping.model.__name__}-{seed}")
    for _ in range(30):
        frame = generated(mapping, rng, height=rng.choice([0, 1, 1, 2, 3, 8, 30]), bad=rng.choice([0, 0.02, 0.1, 0.5]))
        assert_same(mapping, frame)
        if compile_model(mapping.model) is not None:  # compiled: exactly Pandera's verdict (not just never laxer)
            data = frame.drop(ROW)
            assert accepts(data, mapping.model) == pandera_accepts(mapping.model, data)


def wide(**changes: Any) -> pl.DataFrame:
    """Two good Wide rows, the second with `changes`."""
    schema = schema_of(WIDE)
    first = {name: good_row(WIDE)[name] for name in schema}
    rows = [first, first | {"item_id": 2, "ref": "xyz"} | changes]
    return pl.DataFrame(rows, schema=schema, orient="row").with_row_index(ROW)


ACCEPTED = [{}, {"ratio": None}, {"code": None}, {"note": None}, {"count": None}, {"at": None}, {"score": -0.0}]
REFUSED = [
    {"weight": math.nan}, {"weight": None}, {"score": math.nan}, {"score": None}, {"score": math.inf},
    {"ratio": math.nan}, {"ratio": 1.0}, {"ref": "abc"}, {"ref": None}, {"ref": "ab"}, {"code": "ab1"}, {"tag": None},
    {"tag": "bad"}, {"note": "took"}, {"amount": Decimal("0.00")}, {"count": 3}, {"item_id": 6}, {"item_id": None},
]  # fmt: skip


@pytest.mark.parametrize("changes", ACCEPTED + REFUSED, ids=str)
def test_each_check_of_a_wide_model_gives_pandera_s_result(changes: dict[str, Any]) -> None:
    frame = wide(**changes)
    assert_same(WIDE, frame)
    assert accepts(frame.drop(ROW), Wide) == pandera_accepts(Wide, frame.drop(ROW)) == (changes in ACCEPTED)


@pytest.mark.parametrize(
    "frame",
    [
        wide().with_columns(pl.col("item_id").cast(pl.Int32)),  # wrong dtype
        wide().drop("note"),  # missing column
        wide().with_columns(pl.col("at").dt.replace_time_zone(None)),  # naive timestamps
        wide().with_columns(pl.lit(1).alias("extra")),  # a column the strict model does not know
    ],
    ids=["dtype", "missing", "naive", "extra"],
)
@pytest.mark.parametrize("model", [Wide, StrictWide])
def test_frame_level_mismatches_raise_the_same_error(frame: pl.DataFrame, model: type[pa.DataFrameModel]) -> None:
    mapping = mapping_for(model, ("item_id",))
    assert_same(mapping, frame)
    expected = pandera_accepts(model, frame.drop(ROW))
    assert accepts(frame.drop(ROW), model) is expected


def test_rows_rejected_by_several_checks_and_duplicates_keep_pandera_s_details() -> None:
    frame = generated(MERCHANTS, random.Random(7), height=50, bad=0.3)
    fast = split_valid(frame, MERCHANTS)
    assert isinstance(fast, Validated) and fast.rejected.height > 0
    assert_same(MERCHANTS, frame)


@pytest.mark.parametrize("model", [Wide, StrictWide])
def test_the_row_number_column_is_ignored_when_named_and_counted_when_not(model: type[pa.DataFrameModel]) -> None:
    frame = wide()  # the dtype verdicts are remembered per frame schema: the same schema, asked both ways
    assert accepts(frame, model, extra=(ROW,)) is True
    assert accepts(frame, model) is pandera_accepts(model, frame) is (model is Wide)
    assert accepts(frame, model, extra=(ROW,)) is True


def test_a_key_shared_by_two_rows_is_not_accepted_when_the_keys_must_be_unique() -> None:
    frame = wide(item_id=1)  # every check passes; only the key repeats
    assert accepts(frame, Wide, extra=(ROW,)) is True
    assert accepts(frame, Wide, unique_together=("item_id",), extra=(ROW,)) is False
    assert accepts(frame, Wide, unique_together=("item_id", "ref"), extra=(ROW,)) is True
    assert accepts(frame.head(1), Wide, unique_together=("item_id",), extra=(ROW,)) is True
